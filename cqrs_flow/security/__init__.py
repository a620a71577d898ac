"""Secrets and credentials: the system secret, gRPC tokens, MQTT logins, Mosquitto files."""
