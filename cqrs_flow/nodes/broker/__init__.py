"""The broker node: the embedded MQTT broker and its access plugins."""
