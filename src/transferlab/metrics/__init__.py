"""Representation metrics shared by the findings."""
