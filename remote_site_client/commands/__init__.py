"""One module per tp-site command: each declares its flags (`add_parser`) and runs (`run`)."""
