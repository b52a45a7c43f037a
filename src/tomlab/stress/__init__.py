"""Stress tests of the belief-probing claims: each doubt about them as an experiment, and a verdict per doubt."""
