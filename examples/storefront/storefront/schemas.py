"""What the API accepts and answers (pydantic); FastAPI publishes them as OpenAPI."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class SignUp(BaseModel):
    email: str = Field(pattern=r"^[^@\s]+@[^@\s]+\.[a-z]{2,}$", max_length=200)
    password: str = Field(min_length=8, max_length=200)


class Credentials(BaseModel):
    email: str
    password: str


class TokenOut(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - a scheme, not a secret
    expires_in: int


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    email: str
    role: Literal["customer", "admin"]


class ProductIn(BaseModel):
    sku: str = Field(min_length=1, max_length=40)
    name: str = Field(min_length=1, max_length=200)
    price_cents: int = Field(gt=0)
    stock: int = Field(ge=0, default=0)


class ProductChange(BaseModel):
    price_cents: int | None = Field(default=None, gt=0)
    stock: int | None = Field(default=None, ge=0)


class ProductOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    sku: str
    name: str
    price_cents: int
    stock: int


class PriceOut(BaseModel):
    product_id: int
    price_cents: int


class LineIn(BaseModel):
    product_id: int
    quantity: int = Field(gt=0, le=100)


class OrderIn(BaseModel):
    lines: list[LineIn] = Field(min_length=1, max_length=50)


class LineOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    product_id: int
    quantity: int
    price_cents: int


class OrderOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    status: Literal["reserved", "paid", "payment_failed", "cancelled", "fulfilled"]
    total_cents: int
    created_at: datetime
    lines: list[LineOut]
    payment_id: str | None = None


class Health(BaseModel):
    database: Literal["ok", "unavailable"]
    redis: Literal["ok", "unavailable"]


class Problem(BaseModel):
    detail: str
