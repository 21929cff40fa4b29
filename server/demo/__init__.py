"""Demo data: sites, people, prescriptions and generated evidence photos."""
