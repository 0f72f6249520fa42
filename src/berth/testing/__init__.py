"""Test support: throwaway hosts (namespaces) and test images. Never used by berth itself."""
