"""Routing ML settings: one module, driven by environment variables (django-environ).

Safe local defaults: SQLite under var/, the django-q2 ORM broker, artifacts under var/models/.
Every variable that is set but malformed fails at start-up with ImproperlyConfigured naming it.
"""

from __future__ import annotations

import ipaddress
import os
import tempfile
from datetime import timedelta
from pathlib import Path

import environ
from csp.constants import NONCE, NONE, SELF
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VERSION = "0.1.0"

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)


def _typed(name: str, cast, default):
    """Read `name` with `cast`, turning any parse failure into ImproperlyConfigured that names the variable."""
    try:
        return cast(name, default=default)
    except (ValueError, TypeError, environ.ImproperlyConfigured) as exc:
        raise ImproperlyConfigured(f"Environment variable {name} has an invalid value {os.environ.get(name)!r}: {exc}") from exc


def _strict_bool(name: str, default: bool) -> bool:
    """A boolean variable that must say so (true/false, yes/no, on/off, 1/0): django-environ reads any other word as false."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in {"true", "yes", "on", "1", "y"}:
        return True
    if value in {"false", "no", "off", "0", "n"}:
        return False
    raise ImproperlyConfigured(f"Environment variable {name} has an invalid value {raw!r}: use true or false.")


def _database(name: str, url: str) -> dict:
    try:
        config = environ.Env.db_url_config(url)
    except Exception as exc:  # django-environ raises several types for bad URLs
        raise ImproperlyConfigured(f"Environment variable {name} is not a valid database URL ({url!r}): {exc}") from exc
    if config.get("ENGINE", "") not in environ.Env.DB_SCHEMES.values() and "." not in config.get("ENGINE", ""):
        raise ImproperlyConfigured(f"Environment variable {name} names an unsupported database scheme: {url!r}")
    if config["ENGINE"] == "django.db.backends.sqlite3":
        if config["NAME"] != ":memory:":
            Path(config["NAME"]).parent.mkdir(parents=True, exist_ok=True)
        # WAL lets readers (web workers) run beside the writer (qcluster); IMMEDIATE takes the write
        # lock at BEGIN so two writers queue on the busy timeout instead of failing mid-transaction.
        config.setdefault("OPTIONS", {}).update(
            {
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=20000;",
            }
        )
        # Persistent connections, as for PostgreSQL: opening one (connect + the three PRAGMAs) and closing it (the
        # last connection to close checkpoints the WAL and deletes it) cost some 2 ms before and 4 ms after every
        # request, more than a one-item prediction. A kept connection holds no lock or snapshot between requests
        # (autocommit), and a restore is done with the web processes stopped (README, backup runbook).
        config.setdefault("CONN_MAX_AGE", 60)
        # A file, not memory, so tests can hand the same database to a real qcluster process;
        # one per test run, so concurrent runs on one machine never share it.
        config.setdefault("TEST", {"NAME": str(Path(tempfile.gettempdir()) / f"routing_ml_test_{os.getpid()}.sqlite3")})
    elif config["ENGINE"].startswith("django.db.backends.postgresql"):
        config.setdefault("CONN_MAX_AGE", 60)
        config.setdefault("CONN_HEALTH_CHECKS", True)
    return config


def _secret_key_from_file(path: Path) -> str:
    """The key kept in `path`, generated there (mode 0600) on first use; every process (gunicorn workers, qcluster) reads the same one."""
    try:
        key = path.read_text().strip()
        if key:
            return key
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise ImproperlyConfigured(f"SECRET_KEY is not set and {path} cannot be read: {exc}") from exc
    from django.core.management.utils import get_random_secret_key

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(get_random_secret_key() + "\n")
        try:
            os.link(tmp, path)  # atomic, and refuses to replace a key another process wrote first
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
        return path.read_text().strip()
    except OSError as exc:
        raise ImproperlyConfigured(f"SECRET_KEY is not set and a key cannot be written to {path}: {exc}. Set SECRET_KEY or SECRET_KEY_FILE.") from exc


# Production by default (`make run` included); DEBUG=true is for development only.
DEBUG = _strict_bool("DEBUG", False)
# SECRET_KEY from the environment, else generated once into SECRET_KEY_FILE (var/secret_key) and reused.
SECRET_KEY = env.str("SECRET_KEY", default="") or _secret_key_from_file(Path(env.str("SECRET_KEY_FILE", default=str(BASE_DIR / "var" / "secret_key"))))
ALLOWED_HOSTS = _typed("ALLOWED_HOSTS", env.list, ["localhost", "127.0.0.1", "[::1]"] + (["testserver"] if DEBUG else []))
CSRF_TRUSTED_ORIGINS = _typed("CSRF_TRUSTED_ORIGINS", env.list, [])

DATABASES = {"default": _database("DATABASE_URL", env.str("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'var' / 'db.sqlite3'}"))}
ERP_DATABASE_URL = env.str("ERP_DATABASE_URL", default="")
# With a real ERP attached, the erp models read its views through their own alias and are unmanaged.
ERP_EXTERNAL = bool(ERP_DATABASE_URL)
if ERP_EXTERNAL:
    DATABASES["erp"] = _database("ERP_DATABASE_URL", ERP_DATABASE_URL)
DATABASE_ROUTERS = ["erp.router.ErpRouter"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

MODEL_ROOT = Path(env.str("MODEL_ROOT", default=str(BASE_DIR / "var" / "models"))).resolve()
# Keep an incremental columnar snapshot of the ERP extract under MODEL_ROOT/erp_snapshot (erp.snapshot):
# a retrain reads only the partitions that changed. Off: every training reads the ERP in full.
ERP_SNAPSHOT = _strict_bool("ERP_SNAPSHOT", True)
QUALITY_REPORT_ROOT = Path(env.str("QUALITY_REPORT_ROOT", default=str(MODEL_ROOT.parent / "quality_reports"))).resolve()
# Backups (manage.py backup / verify_backup / restore): where, how many, when (cron; empty: no schedule).
BACKUP_ROOT = Path(env.str("BACKUP_ROOT", default=str(MODEL_ROOT.parent / "backups"))).resolve()
BACKUP_KEEP = _typed("BACKUP_KEEP", env.int, 7)
BACKUP_SCHEDULE_CRON = env.str("BACKUP_SCHEDULE_CRON", default="30 1 * * *")
# /health turns degraded when the newest backup is older than this.
BACKUP_MAX_AGE_HOURS = _typed("BACKUP_MAX_AGE_HOURS", env.float, 36.0)
if BACKUP_SCHEDULE_CRON:
    from croniter import croniter

    if not croniter.is_valid(BACKUP_SCHEDULE_CRON):
        raise ImproperlyConfigured(f"Environment variable BACKUP_SCHEDULE_CRON is not a valid cron expression: {BACKUP_SCHEDULE_CRON!r}")
if BACKUP_KEEP < 1:
    raise ImproperlyConfigured(f"Environment variable BACKUP_KEEP must be at least 1, got {BACKUP_KEEP}")
REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL and not REDIS_URL.startswith(("redis://", "rediss://", "unix://")):
    raise ImproperlyConfigured(f"Environment variable REDIS_URL must be a redis:// URL, got {REDIS_URL!r}")

# How often a process re-reads which model version is active (seconds).
MODEL_RELOAD_INTERVAL = _typed("MODEL_RELOAD_INTERVAL", env.float, 2.0)
# At each reload check the served bundle's file sizes and times are compared; every MODEL_VERIFY_INTERVAL
# seconds its files are also re-hashed against the manifest (0: never).
MODEL_VERIFY_INTERVAL = _typed("MODEL_VERIFY_INTERVAL", env.float, 600.0)
# The active version's neighbour table (registry.neighbour_tables): every known item's neighbours worked out
# once, by the cluster within a minute of an activation, on NEIGHBOUR_TABLE_THREADS threads. Off: always search.
NEIGHBOUR_TABLE = _strict_bool("NEIGHBOUR_TABLE", True)
NEIGHBOUR_TABLE_THREADS = _typed("NEIGHBOUR_TABLE_THREADS", env.int, 2)
if NEIGHBOUR_TABLE_THREADS < 1:
    raise ImproperlyConfigured(f"Environment variable NEIGHBOUR_TABLE_THREADS must be at least 1, got {NEIGHBOUR_TABLE_THREADS}")
PREDICTION_BATCH_LIMIT = _typed("PREDICTION_BATCH_LIMIT", env.int, 1000)
# Served predictions logged for planner agreement (predictions.PredictionLog): by which channels, kept how long (0 = forever).
PREDICTION_LOG_CHANNELS = _typed("PREDICTION_LOG_CHANNELS", env.list, ["api", "page"])
PREDICTION_LOG_RETENTION_DAYS = _typed("PREDICTION_LOG_RETENTION_DAYS", env.int, 180)
TRAINING_TIMEOUT = _typed("TRAINING_TIMEOUT", env.int, 3600)
TRAINING_HEARTBEAT_TIMEOUT = _typed("TRAINING_HEARTBEAT_TIMEOUT", env.int, 300)
# A running quality cycle beats every INTERVAL seconds; one silent for TIMEOUT seconds is failed by the
# every-minute housekeeping (so a killed cycle is failed within TIMEOUT + 60 s). A cycle queued for
# QUEUE_TIMEOUT seconds without a worker taking it is failed too, so it never blocks the next one.
QUALITY_CYCLE_HEARTBEAT_INTERVAL = _typed("QUALITY_CYCLE_HEARTBEAT_INTERVAL", env.float, 10.0)
QUALITY_CYCLE_HEARTBEAT_TIMEOUT = _typed("QUALITY_CYCLE_HEARTBEAT_TIMEOUT", env.int, 45)
QUALITY_CYCLE_QUEUE_TIMEOUT = _typed("QUALITY_CYCLE_QUEUE_TIMEOUT", env.int, 1800)

INSTALLED_APPS = [
    "django_prometheus",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework_simplejwt",
    "rest_framework_simplejwt.token_blacklist",
    "axes",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_q",
    "simple_history",
    "routing_ml.apps.RoutingMLConfig",
    "erp",
    "registry",
    "training",
    "predictions",
    "quality",
]

MIDDLEWARE = [
    "routing_ml.middleware.HostileInputMiddleware",
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "routing_ml.middleware.PermissionsPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "simple_history.middleware.HistoryRequestMiddleware",
    # Last, as django-axes asks: turns a locked-out login into its 429 page.
    "axes.middleware.AxesMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "routing_ml.urls"
WSGI_APPLICATION = "routing_ml.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
CSRF_FAILURE_VIEW = "routing_ml.api.csrf_failure"
# Request bodies: JSON and form fields up to DATA_UPLOAD_MAX_MEMORY_SIZE (Django's 2.5 MB; a
# 1,000-item prediction request is some 300 kB); a multipart upload (the planner's CSV file) up to
# UPLOAD_MAX_BYTES. Larger bodies are refused with 413 before they are read.
UPLOAD_MAX_BYTES = 10 * 1024 * 1024
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "var" / "staticfiles"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # whitenoise warns on every request when it is missing
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

REST_FRAMEWORK = {
    # JWT first: its WWW-Authenticate header makes a missing credential a 401, not a 403.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "routing_ml.tokens.JWTAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "routing_ml.drf.BoundedLimitOffsetPagination",
    "DEFAULT_PARSER_CLASSES": ["routing_ml.drf.SafeJSONParser", "rest_framework.parsers.FormParser", "rest_framework.parsers.MultiPartParser"],
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "routing_ml.api.exception_handler",
    # DRF's per-user throttle counting its window in buckets: its own kept every request's timestamp (routing_ml/throttling.py).
    "DEFAULT_THROTTLE_CLASSES": ["routing_ml.throttling.UserRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {
        "user": _typed("API_THROTTLE_RATE", env.str, "100000/hour"),
        # The token endpoints (routing_ml.auth): per client address, and per username on obtain.
        "auth_address": _typed("AUTH_THROTTLE_RATE_ADDRESS", env.str, "30/minute"),
        "auth_username": _typed("AUTH_THROTTLE_RATE_USERNAME", env.str, "10/minute"),
    },
    # The client address is REMOTE_ADDR unless NUM_PROXIES trusted proxies add X-Forwarded-For (else anyone could forge it).
    "NUM_PROXIES": _typed("NUM_PROXIES", env.int, 0),
}
SIMPLE_JWT = {
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
    "TOKEN_OBTAIN_SERIALIZER": "routing_ml.auth.TokenObtainPairSerializer",
    "TOKEN_REFRESH_SERIALIZER": "routing_ml.auth.TokenRefreshSerializer",
}

# Login forms (admin, planners) and the token endpoint lock out a username from an address after
# AXES_FAILURE_LIMIT failures for AXES_COOLOFF_TIME; unlock early with `manage.py axes_reset`.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = _typed("AXES_FAILURE_LIMIT", env.int, 5)
AXES_COOLOFF_TIME = timedelta(minutes=_typed("AXES_COOLOFF_MINUTES", env.int, 15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_HTTP_RESPONSE_CODE = 429

# Caches: "throttle" counts the API's and the token endpoint's requests for every process of a host (Redis when
# there is one, else files in THROTTLE_CACHE_DIR).
THROTTLE_CACHE_DIR = env.str("THROTTLE_CACHE_DIR", default=str(BASE_DIR / "var" / "cache" / "throttle"))
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "throttle": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL, "KEY_PREFIX": "routing_ml"}
        if REDIS_URL
        # Room for every user's 61 counters: past MAX_ENTRIES the file cache deletes a third of its files at random.
        else {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache", "LOCATION": THROTTLE_CACHE_DIR, "OPTIONS": {"MAX_ENTRIES": 200_000}}
    ),
}

# Content-Security-Policy (django-csp): scripts only from this site or inline with the request's nonce
# (the Plotly charts); styles may be inline (Plotly sets them from its script).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF, NONCE],
        "style-src": [SELF, "'unsafe-inline'"],
        "img-src": [SELF, "data:"],
        "font-src": [SELF, "data:"],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}
PERMISSIONS_POLICY = (
    "accelerometer=(), camera=(), display-capture=(), geolocation=(), gyroscope=(), magnetometer=(), microphone=(), "
    "midi=(), payment=(), usb=(), serial=(), hid=(), bluetooth=(), publickey-credentials-get=(), screen-wake-lock=(), xr-spatial-tracking=()"
)
SPECTACULAR_SETTINGS = {
    "TITLE": "Routing ML API",
    "DESCRIPTION": "Predict manufacturing routings; train, register and monitor the models behind them.",
    "VERSION": VERSION,
    "SERVE_INCLUDE_SCHEMA": False,
    # Every operation documents its error responses with the one error body (routing_ml/schema.py).
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "routing_ml.schema.add_error_responses"],
    # Swagger UI's files come from our own static files: a factory network often has no internet.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Several records have a `status`; name each choice set after its model so clients get stable enum names.
    "ENUM_NAME_OVERRIDES": {
        "TrainingJobStatusEnum": "training.models.TrainingJob.Status",
        "ModelVersionStatusEnum": "registry.models.ModelVersion.Status",
        "QualityCycleStatusEnum": "quality.models.QualityCycle.Status",
        "QualityAlertStatusEnum": "quality.models.QualityAlert.Status",
        "TrainingJobTriggerEnum": "training.models.TrainingJob.Trigger",
        "QualityCycleTriggerEnum": "quality.models.QualityCycle.Trigger",
        "SampleStrategyEnum": "quality.models.QualitySettings.Strategy",
        "TimeSourceEnum": "predictions.serializers.TIME_SOURCES",
    },
}

# Resource checks (every minute on the cluster, and /health): free space under MODEL_ROOT and BACKUP_ROOT
# below either limit raises alert 2001 (critical below half of it); memory use over the limit raises 2002.
DISK_FREE_MIN_PERCENT = _typed("DISK_FREE_MIN_PERCENT", env.float, 10.0)
DISK_FREE_MIN_MB = _typed("DISK_FREE_MIN_MB", env.float, 2048.0)
MEMORY_HIGH_PERCENT = _typed("MEMORY_HIGH_PERCENT", env.float, 90.0)

# Notifications (quality/notifications.py): mail through Django's mail settings, webhooks by URL.
ALERT_EMAILS = _typed("ALERT_EMAILS", env.list, [])
ALERT_WEBHOOK_URL = _typed("ALERT_WEBHOOK_URL", env.list, [])
ALERT_MIN_LEVEL = env.str("ALERT_MIN_LEVEL", default="warning")
if ALERT_MIN_LEVEL not in ("info", "warning", "critical"):
    raise ImproperlyConfigured(f"Environment variable ALERT_MIN_LEVEL must be info, warning or critical, got {ALERT_MIN_LEVEL!r}")
# The address links in messages point at (the admin's alert page, the job, the version).
SITE_URL = env.str("SITE_URL", default="http://127.0.0.1:8000")
NOTIFY_MAX_ATTEMPTS = _typed("NOTIFY_MAX_ATTEMPTS", env.int, 5)
NOTIFY_RETRY_BACKOFF = _typed("NOTIFY_RETRY_BACKOFF", env.float, 30.0)
NOTIFY_TIMEOUT = _typed("NOTIFY_TIMEOUT", env.float, 10.0)
# EMAIL_URL, e.g. smtp+tls://user:password@mail.example.com:587 (django-environ); default: an SMTP server on localhost:25.
vars().update(_typed("EMAIL_URL", env.email_url, "smtp://localhost:25"))
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="routing-ml@localhost")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
EMAIL_TIMEOUT = NOTIFY_TIMEOUT

# django-q2: the ORM broker by default (nothing else to run); Redis when REDIS_URL is set.
Q_CLUSTER = {
    "name": "routing_ml",
    "workers": _typed("Q_WORKERS", env.int, 2),
    "timeout": TRAINING_TIMEOUT,
    # retry must exceed timeout or a long job would be handed to a second worker while still running.
    "retry": TRAINING_TIMEOUT + 600,
    "max_attempts": 1,
    "queue_limit": 20,
    "catch_up": False,
    "save_limit": 500,
    "label": "Task queue",
}
# A separate cluster for training (scale-out): training jobs go to the queue TRAINING_CLUSTER, served by
# `Q_CLUSTER_NAME=<TRAINING_CLUSTER> manage.py qcluster` (TRAINING_WORKERS workers); everything else, and
# every schedule, stays on the default cluster. Empty: one cluster does everything.
TRAINING_CLUSTER = env.str("TRAINING_CLUSTER", default="")
TRAINING_WORKERS = _typed("TRAINING_WORKERS", env.int, 1)
if TRAINING_CLUSTER == Q_CLUSTER["name"]:
    raise ImproperlyConfigured(f"Environment variable TRAINING_CLUSTER must differ from the default cluster's name {Q_CLUSTER['name']!r}")
# django-q2 reads the settings of a cluster started with Q_CLUSTER_NAME from ALT_CLUSTERS (and needs the key to exist).
Q_CLUSTER["ALT_CLUSTERS"] = {TRAINING_CLUSTER: {"workers": TRAINING_WORKERS}} if TRAINING_CLUSTER else {}
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

PROMETHEUS_EXPORT_MIGRATIONS = False

# /health details: anonymous callers get the status only, unless they come from this machine (no proxy in between).
# /metrics: open unless METRICS_TOKEN (a bearer token) or METRICS_ALLOWED_IPS (addresses or networks) is set.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
METRICS_ALLOWED_IPS = _typed("METRICS_ALLOWED_IPS", env.list, [])
for _net in METRICS_ALLOWED_IPS:
    try:
        ipaddress.ip_network(_net.strip(), strict=False)
    except ValueError as exc:
        raise ImproperlyConfigured(f"Environment variable METRICS_ALLOWED_IPS has an invalid address or network {_net!r}: {exc}") from exc

if not DEBUG:
    # HTTPS=false serves plain HTTP (`make run` on a trusted LAN or loopback): no redirect, no secure-only cookies, no HSTS.
    HTTPS = _strict_bool("HTTPS", True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = _strict_bool("SECURE_SSL_REDIRECT", HTTPS)
    SESSION_COOKIE_SECURE = HTTPS
    CSRF_COOKIE_SECURE = HTTPS
    SECURE_HSTS_SECONDS = _typed("SECURE_HSTS_SECONDS", env.int, 31536000 if HTTPS else 0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_CONTENT_TYPE_NOSNIFF = True
    # /health and /metrics are probed over plain HTTP by load balancers and Prometheus.
    SECURE_REDIRECT_EXEMPT = [r"^health", r"^metrics$"]
