-- Let full-text and trigram matches use their indexes under row-level security.
--
-- Under RLS, Postgres may only evaluate a query's own condition inside an index scan (before the
-- policy has filtered the rows) when the operator's function is LEAKPROOF. ts_match_vq (@@) and
-- pg_trgm's similarity_op (%) are not marked so, and without this every search reads all of a
-- tenant's rows and filters them (checked with EXPLAIN as rg_app; see docs/ARCHITECTURE.md).
-- Both only compute a boolean from their arguments and raise no data-dependent error, so marking
-- them LEAKPROOF reveals nothing. Only a superuser may do so: elsewhere the migration logs a
-- warning and searches stay correct, only slower.
DO $$
BEGIN
    ALTER FUNCTION pg_catalog.ts_match_vq(tsvector, tsquery) LEAKPROOF;
    ALTER FUNCTION public.similarity_op(text, text) LEAKPROOF;
EXCEPTION WHEN insufficient_privilege THEN
    RAISE WARNING 'search operators not marked LEAKPROOF (needs a superuser): '
                  'full-text and trigram searches will not use their indexes under RLS';
END
$$;
