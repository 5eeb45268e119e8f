from django.db import models


class Order(models.Model):
    # The client's order id (dualcheck's op id): the primary key.
    id = models.BigIntegerField(primary_key=True)
    customer_id = models.TextField()
    line_no = models.BigIntegerField()

    class Meta:
        db_table = "orders"

    def __str__(self):
        return f"Order(id={self.id}, customer_id={self.customer_id}, line_no={self.line_no})"
