"""The Neo4j store: the production `GraphStore` (Neo4j 5 server, cluster or Aura)."""

from persona_server.adapters.stores.neo4j.store import Neo4jGraphStore

__all__ = ["Neo4jGraphStore"]
