"""Process plumbing shared by every mode: spawning and stopping processes, restart
backoff, waiting for a state, deadlines on calls that may hang, and ports."""
