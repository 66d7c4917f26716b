"""pyinfra facts of labtorch: thin wrappers that turn command output into the core's data."""
