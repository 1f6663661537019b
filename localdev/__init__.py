"""Local development tools (emulators, TLS helpers); never deployed."""
