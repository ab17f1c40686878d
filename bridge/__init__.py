"""The conferencing bridge appliance (see README.md and ../shared/DESIGN.md)."""
