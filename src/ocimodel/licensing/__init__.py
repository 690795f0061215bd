"""Licenses: SPDX expressions parsed into a tree, and judged against a policy's rules."""
