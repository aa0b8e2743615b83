"""File transfer in the clients: files on disk, progress, words, and the manager."""
