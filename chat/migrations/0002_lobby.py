"""Create lobby, the public room every user is a member of."""

from django.db import migrations


def create_lobby(apps, schema_editor):
    Room = apps.get_model("chat", "Room")
    Membership = apps.get_model("chat", "Membership")
    User = apps.get_model("accounts", "User")
    lobby, _ = Room.objects.get_or_create(name="lobby", defaults={"private": False})
    existing = set(Membership.objects.filter(room=lobby).values_list("user_id", flat=True))
    Membership.objects.bulk_create(
        [
            Membership(room=lobby, user_id=user_id)
            for user_id in User.objects.values_list("pk", flat=True)
            if user_id not in existing
        ]
    )


class Migration(migrations.Migration):
    dependencies = [
        ("chat", "0001_initial"),
        ("accounts", "0001_initial"),
    ]

    operations = [migrations.RunPython(create_lobby, migrations.RunPython.noop)]
