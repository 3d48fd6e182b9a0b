"""MongoDB: the connection, the collections and their queries, tokens sealed at rest."""
