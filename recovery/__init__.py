"""recovery: keep a Node.js app under PM2 answering HTTP, and remember everything."""

__version__ = "0.1.0"
