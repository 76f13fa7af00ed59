-- The shard hash of every product's SKU (catalog.ShardHash: 32-bit FNV-1a of
-- its UTF-8 bytes), so that a shard workflow's backfill (Catalog.Unsynced)
-- keeps its own SKUs in PostgreSQL instead of reading the whole catalogue
-- and dropping all but 1/shards of it in sagaflow. sagaflow writes it with
-- every new product (a SKU never changes); fnv1a32(text) computes the same
-- in SQL, for the rows that exist now and for the tests that check the two
-- agree.
CREATE FUNCTION fnv1a32(sku text) RETURNS bigint
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    b bytea := convert_to(sku, 'UTF8');
    h bigint := 2166136261;
BEGIN
    FOR i IN 0 .. length(b) - 1 LOOP
        h := ((h # get_byte(b, i)) * 16777619) & 4294967295;
    END LOOP;
    RETURN h;
END
$$;

ALTER TABLE products ADD COLUMN sku_hash bigint CHECK (sku_hash BETWEEN 0 AND 4294967295);
UPDATE products SET sku_hash = fnv1a32(sku);
ALTER TABLE products ALTER COLUMN sku_hash SET NOT NULL;
