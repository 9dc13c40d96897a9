"""The SDK version, kept in one place (sent as the gRPC user agent)."""

__version__ = "0.1.0"
