"""Kubernetes objects of a Vineyard runtime, as plain manifests."""
