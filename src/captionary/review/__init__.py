"""The review app: human decisions (stored per task and item id), thumbnails, and the web server
(FastAPI + uvicorn, plain HTML/JS/CSS in `static/`) that human steps and `captionary serve` open."""
