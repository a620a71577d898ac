"""The gateway node: GraphQL over HTTP and WebSocket, limits, outbox, command statuses."""
