"""`persona view`: a user's exported graph as one self-contained HTML page."""
