# What `manage.py makemigrations orders` writes for orders/models.py.

from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies = []

    operations = [
        migrations.CreateModel(
            name="Order",
            fields=[
                ("id", models.BigIntegerField(primary_key=True, serialize=False)),
                ("customer_id", models.TextField()),
                ("line_no", models.BigIntegerField()),
            ],
            options={
                "db_table": "orders",
            },
        ),
    ]
