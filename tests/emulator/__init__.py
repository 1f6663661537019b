"""Tests of the ACS Identity emulator (localdev.acs_emulator)."""
