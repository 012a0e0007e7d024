"""Who the node and its owner are: Ed25519 keys, did:key, DID documents, and the passphrase-sealed keyring."""
