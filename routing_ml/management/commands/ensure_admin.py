"""Create the first administrator if there is none (used by `make run`)."""

import os
import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand

from routing_ml.roles import ML_ADMINS


class Command(BaseCommand):
    help = "Create an 'admin' superuser (password from DJANGO_SUPERUSER_PASSWORD, else generated and printed once)."

    def add_arguments(self, parser):
        parser.add_argument("--username", default=os.environ.get("DJANGO_SUPERUSER_USERNAME", "admin"))

    def handle(self, *args, username, **options):
        User = get_user_model()
        if User.objects.filter(is_superuser=True).exists():
            self.stdout.write("An administrator already exists; nothing to do.")
            return
        password = os.environ.get("DJANGO_SUPERUSER_PASSWORD") or secrets.token_urlsafe(12)
        user = User.objects.create_superuser(username=username, email="", password=password)
        user.groups.add(Group.objects.get(name=ML_ADMINS))
        if os.environ.get("DJANGO_SUPERUSER_PASSWORD"):
            self.stdout.write(self.style.SUCCESS(f"Created administrator {username!r} with the password from DJANGO_SUPERUSER_PASSWORD."))
        else:
            self.stdout.write(self.style.SUCCESS(f"Created administrator {username!r} with password: {password}"))
            self.stdout.write("This password is shown only once. Change it in the admin.")
