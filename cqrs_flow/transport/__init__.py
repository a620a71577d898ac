"""How nodes talk: gRPC from descriptors, MQTT clients, TLS."""
