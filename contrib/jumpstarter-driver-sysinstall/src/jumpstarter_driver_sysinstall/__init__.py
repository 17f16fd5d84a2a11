"""Jumpstarter driver and client for Jetson boards running the sysinstall upgrader."""
