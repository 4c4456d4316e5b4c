INSERT INTO products (id, name, price_cents) VALUES (1, 'tea', 450), (2, 'cake', 300);
