"""IPNS: channel keys, records (build, validate, sequence rule), names, and publish/republish to nodes."""
