"""Real servers and helpers the tests share, started by fixtures and stopped without a trace."""
