"""kubeinfer.kube.login: the credentials the operator (and kopf, through it) uses."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import yaml

from kubeinfer.kube import Credentials, login

PEM = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def _kubeconfig(path: Path, user: dict[str, object], current: str = "ctx") -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "current-context": current,
                "contexts": [
                    {"name": "ctx", "context": {"cluster": "c", "user": "u", "namespace": "ml"}}
                ],
                "clusters": [
                    {
                        "name": "c",
                        "cluster": {
                            "server": "https://10.0.0.1:6443/",
                            "certificate-authority-data": base64.b64encode(PEM).decode(),
                        },
                    }
                ],
                "users": [{"name": "u", "user": user}],
            }
        )
    )
    return path


@pytest.fixture(autouse=True)
def _outside_a_pod(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)


def test_token_user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECONFIG", str(_kubeconfig(tmp_path / "k", {"token": "abc"})))
    found = login()
    assert found == Credentials(
        server="https://10.0.0.1:6443", ca_data=PEM, token="abc", default_namespace="ml"
    )
    assert found.current_token() == "abc"


def test_inline_client_certificate_goes_to_private_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = {
        "client-certificate-data": base64.b64encode(b"cert").decode(),
        "client-key-data": base64.b64encode(b"key").decode(),
    }
    monkeypatch.setenv("KUBECONFIG", str(_kubeconfig(tmp_path / "k", user)))
    found = login()
    assert found.cert_path and found.key_path
    assert Path(found.cert_path).read_bytes() == b"cert"
    assert Path(found.key_path).read_bytes() == b"key"
    assert Path(found.key_path).stat().st_mode & 0o077 == 0  # nobody else reads the key


def test_the_first_file_naming_a_context_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _kubeconfig(tmp_path / "a", {"token": "first"})
    second = _kubeconfig(tmp_path / "b", {"token": "second"})
    monkeypatch.setenv("KUBECONFIG", f"{first}:{second}")
    assert login().token == "first"


def test_plugin_logins_are_refused_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    user = {"exec": {"command": "aws", "apiVersion": "client.authentication.k8s.io/v1"}}
    monkeypatch.setenv("KUBECONFIG", str(_kubeconfig(tmp_path / "k", user)))
    with pytest.raises(RuntimeError, match="user u logs in through a plugin"):
        login()


def test_no_current_context(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECONFIG", str(_kubeconfig(tmp_path / "k", {}, current="")))
    with pytest.raises(RuntimeError, match="no current context"):
        login()


def test_a_service_account_token_is_read_again(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("one\n")
    found = Credentials(server="https://k", token_path=str(token))
    assert found.current_token() == "one"
    token.write_text("two\n")  # the kubelet rotated it
    assert found.current_token() == "two"
