"""The vault: envelope encryption, the sealed record store, ingestion, and the vector and lexical indexes."""
