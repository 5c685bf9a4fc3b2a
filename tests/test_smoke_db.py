import psycopg

from autotel.config import Config


def test_site_database_is_reachable(site: Config) -> None:
    with psycopg.connect(site.database.dsn.get_secret_value()) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
    assert site.agent.port == 0
