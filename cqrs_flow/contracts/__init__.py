"""Node contracts: what each node kind needs from topology + protos + GraphQL schema."""
