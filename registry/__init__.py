"""The registry: manifest index, HTTP API, trust, the validation gate, the daemon and the CLI."""
