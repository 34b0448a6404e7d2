"""Stand-ins for the desktop services btogether talks to (logind, screensavers,
notifications, a headless PulseAudio), for tests and the demo on machines without them."""
