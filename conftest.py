"""Repository-root conftest: registers the Neo4j harness fixtures for every test directory."""

pytest_plugins = ["tests.neo4j_plugin"]
