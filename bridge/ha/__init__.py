"""High availability: heartbeat, role state machine, floating IP (empty so far: no issue has asked for it;
the engine reports role "active")."""
