-- What every test starts from: two users (passwords hashed with 1000 PBKDF2 rounds,
-- cheap on purpose), and a catalogue. ada-secret-1 / grace-secret-1.
INSERT INTO users (id, email, password_hash, role) VALUES
    (1, 'ada@example.com',
     'pbkdf2_sha256$1000$seed$e0010d50fc3e7c1eb8a6bace216ddf6ba4bcdb36093e4983bd3f2fe7a854bbb1',
     'customer'),
    (2, 'grace@example.com',
     'pbkdf2_sha256$1000$seed$6ee9ca3f15a6beae557e4a530a9af7162843fc765fbddd81b4f47144b2adb513',
     'admin');
INSERT INTO products (id, sku, name, price_cents, stock) VALUES
    (1, 'TEA-01', 'Assam tea, 250 g', 450, 100),
    (2, 'MUG-01', 'Stoneware mug', 1200, 20),
    (3, 'POT-01', 'Cast-iron teapot', 5900, 1);
-- New rows get ids after the seed's.
SELECT setval('users_id_seq', 1000);
SELECT setval('products_id_seq', 1000);
