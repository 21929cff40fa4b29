"""Who is calling and what they may do: roles, passwords, sessions, device tokens."""
