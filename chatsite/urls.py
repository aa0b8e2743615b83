"""HTTP routes: only the admin. The chat itself is the WebSocket at /ws/chat/ (asgi.py)."""

from django.contrib import admin
from django.urls import path

admin.site.site_header = "Chat administration"
admin.site.site_title = "Chat administration"

urlpatterns = [
    path("admin/", admin.site.urls),
]
