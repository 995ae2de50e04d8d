"""Reconcilers: plain functions from (spec, observed state) to (desired objects, status).

Nothing here talks to Kubernetes or imports kopf; the operator feeds them what it
observed and applies what they return. The same inputs always give the same outputs.
"""
