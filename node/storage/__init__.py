"""Storage: a small key-value port (LevelDB or in-memory) and the chain store built on it."""
