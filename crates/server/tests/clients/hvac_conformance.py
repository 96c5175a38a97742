"""Drive credvault's Vault-KV-v2 door with the real PyPI `hvac` client (HashiCorp's Python client).

Usage: hvac_conformance.py URL ROOT_TOKEN OUTSIDER_TOKEN
Prints one JSON object of what the client observed; the Rust test asserts on it.
"""

import json
import sys

import hvac
from hvac import exceptions


def main() -> None:
    url, root_token, outsider_token = sys.argv[1], sys.argv[2], sys.argv[3]
    out = {"hvac_version": getattr(hvac, "__version__", "unknown")}
    c = hvac.Client(url=url, token=root_token)
    kv = c.secrets.kv.v2
    out["authenticated"] = c.is_authenticated()
    out["sealed"] = c.sys.is_sealed()

    # write and read
    w1 = kv.create_or_update_secret(path="app/db", secret={"username": "app", "password": "hv-pw-1"}, mount_point="secret")
    out["write1_version"] = w1["data"]["version"]
    r = kv.read_secret_version(path="app/db", mount_point="secret", raise_on_deleted_version=True)
    out["read1"] = r["data"]["data"]
    out["read1_version"] = r["data"]["metadata"]["version"]

    # cas: a stale cas is refused, the right one accepted
    try:
        kv.create_or_update_secret(path="app/db", secret={"password": "stale"}, cas=0, mount_point="secret")
        out["cas_stale"] = "accepted"
    except exceptions.InvalidRequest as e:
        out["cas_stale"] = str(e)
    w2 = kv.create_or_update_secret(path="app/db", secret={"username": "app", "password": "hv-pw-2"}, cas=1, mount_point="secret")
    out["write2_version"] = w2["data"]["version"]

    # patch (merge into the latest version)
    kv.patch(path="app/db", secret={"port": "5432"}, mount_point="secret")
    r = kv.read_secret_version(path="app/db", mount_point="secret", raise_on_deleted_version=True)
    out["after_patch"] = r["data"]["data"]
    out["after_patch_version"] = r["data"]["metadata"]["version"]

    # versions
    old = kv.read_secret_version(path="app/db", version=1, mount_point="secret", raise_on_deleted_version=True)
    out["version1"] = old["data"]["data"]

    # list
    kv.create_or_update_secret(path="app/nested/deep", secret={"k": "v"}, mount_point="secret")
    kv.create_or_update_secret(path="top", secret={"k": "v"}, mount_point="secret")
    out["list_root"] = kv.list_secrets(path="", mount_point="secret")["data"]["keys"]
    out["list_app"] = kv.list_secrets(path="app", mount_point="secret")["data"]["keys"]

    # metadata
    kv.update_metadata(path="app/db", max_versions=5, cas_required=False, custom_metadata={"team": "payments"}, mount_point="secret")
    m = kv.read_secret_metadata(path="app/db", mount_point="secret")["data"]
    out["metadata"] = {
        "current_version": m["current_version"],
        "max_versions": m["max_versions"],
        "custom_metadata": m["custom_metadata"],
        "versions": sorted(m["versions"].keys()),
    }

    # delete latest, undelete, destroy
    kv.delete_latest_version_of_secret(path="app/db", mount_point="secret")
    try:
        kv.read_secret_version(path="app/db", mount_point="secret", raise_on_deleted_version=True)
        out["read_deleted"] = "readable"
    except exceptions.InvalidPath:
        out["read_deleted"] = "not found"
    kv.undelete_secret_versions(path="app/db", versions=[3], mount_point="secret")
    r = kv.read_secret_version(path="app/db", mount_point="secret", raise_on_deleted_version=True)
    out["after_undelete"] = r["data"]["data"]
    kv.destroy_secret_versions(path="app/db", versions=[1], mount_point="secret")
    m = kv.read_secret_metadata(path="app/db", mount_point="secret")["data"]
    out["v1_destroyed"] = m["versions"]["1"]["destroyed"]
    try:
        kv.read_secret_version(path="app/db", version=1, mount_point="secret", raise_on_deleted_version=True)
        out["read_destroyed"] = "readable"
    except exceptions.InvalidPath:
        out["read_destroyed"] = "not found"

    # delete everything
    kv.delete_metadata_and_all_versions(path="top", mount_point="secret")
    try:
        kv.read_secret_version(path="top", mount_point="secret", raise_on_deleted_version=True)
        out["read_removed"] = "readable"
    except exceptions.InvalidPath:
        out["read_removed"] = "not found"

    # permission denied: a token without access to the mount, and a bad token
    outsider = hvac.Client(url=url, token=outsider_token)
    try:
        outsider.secrets.kv.v2.read_secret_version(path="app/db", mount_point="secret", raise_on_deleted_version=True)
        out["outsider"] = "readable"
    except exceptions.Forbidden as e:
        out["outsider"] = "forbidden"
    bad = hvac.Client(url=url, token="cvt_not-a-real-token")
    out["bad_token_authenticated"] = bad.is_authenticated()

    # AppRole login (role_id = AppID, secret_id = the application's client secret), when configured
    if len(sys.argv) > 5:
        role_id, secret_id = sys.argv[4], sys.argv[5]
        app = hvac.Client(url=url)
        login = app.auth.approle.login(role_id=role_id, secret_id=secret_id)
        out["approle_token_type"] = login["auth"]["token_type"]
        out["approle_read"] = app.secrets.kv.v2.read_secret_version(path="app/db", mount_point="secret", raise_on_deleted_version=True)["data"]["data"]
        # an application lists through its grants, like anyone else (the service's visibility)
        out["approle_list"] = app.secrets.kv.v2.list_secrets(path="app", mount_point="secret")["data"]["keys"]
        try:
            hvac.Client(url=url).auth.approle.login(role_id=role_id, secret_id="wrong")
            out["approle_wrong"] = "accepted"
        except (exceptions.InvalidRequest, exceptions.Forbidden, exceptions.Unauthorized) as e:
            out["approle_wrong"] = "refused"

    print(json.dumps(out))


if __name__ == "__main__":
    main()
