"""Web sources: image boards crawled politely and resumably (`load_booru`)."""
