"""pyinfra operations of labtorch: each decides from facts and yields commands, or nothing."""
