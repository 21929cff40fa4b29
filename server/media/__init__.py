"""Media: resumable uploads, validation of images and videos, content-addressed storage."""
