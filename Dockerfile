# One image for every process of the Procfile: `gunicorn app:app` by default; compose.yaml runs the worker
# (`flask worker`) and the release step (`flask migrate`) from it too. Build: docker build -t convertkit-optin .
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
FROM ${PYTHON_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PATH=/opt/venv/bin:$PATH

RUN python -m venv /opt/venv \
 && useradd --system --uid 10001 --user-group --home-dir /app --no-create-home --shell /usr/sbin/nologin optin

WORKDIR /app

# The pinned dependencies first (requirements.txt, `make lock`), so a code change does not reinstall them.
COPY requirements.txt ./
RUN sed '/^\.[[:space:]]/d' requirements.txt > /tmp/pins.txt \
 && pip install -r /tmp/pins.txt \
 && rm /tmp/pins.txt

# Then the project itself, as the buildpack installs it (the `.` line): `flask migrate` is one of its entry points.
COPY . .
RUN pip install --no-deps . \
 && rm -rf build ./*.egg-info \
 && mkdir -p instance \
 && chown optin:optin instance

# Code and forms.toml stay root's and read-only to the app; only instance/ (the SQLite file, a volume) is its own.
USER optin
ENV PORT=5000
EXPOSE 5000
VOLUME ["/app/instance"]
CMD ["gunicorn", "app:app"]
