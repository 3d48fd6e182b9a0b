"""The emulator's WeChat users: a fixed cast that covers the cases a sign-in must handle."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # state.py imports this module
    from service.sandbox.state import SandboxConfig

# 2024-01-01T00:00:00Z: a fixed follow time keeps answers reproducible.
_FOLLOWED_AT = 1704067200


@dataclass(frozen=True, slots=True)
class SandboxUser:
    # Real openids are 28 characters, per account; unionids are shared across an Open Platform
    # account's apps and exist only when the account is bound to one.
    openid: str
    unionid: str | None
    nickname: str
    # WeChat's avatar URLs end in a size segment (0, 46, 64, 96, 132); empty when none is set.
    headimgurl: str
    subscribed: bool
    subscribe_time: int | None
    # What cgi-bin/user/info tells about a follower (§9); blank for users who don't follow.
    # subscribe_scene is one of WeChat's ADD_SCENE_* values; qr_scene / qr_scene_str are the
    # parametric QR code's scene when the user followed through one (0 / "" otherwise).
    subscribe_scene: str = ""
    qr_scene: int = 0
    qr_scene_str: str = ""
    remark: str = ""
    tagid_list: tuple[int, ...] = ()
    # A virtual account from WeChat's snapshot page (快照页, wechat-api.md §1): its token
    # exchange says is_snapshotuser 1 and sns/userinfo answers 48001.
    snapshot: bool = False

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def _avatar(seed: str) -> str:
    return f"https://thirdwx.qlogo.cn/mmopen/vi_32/Sandbox{seed}AvatarQ0j4TwGTfTLJ/132"


SANDBOX_USERS: tuple[SandboxUser, ...] = (
    SandboxUser(
        openid="oSbx01FollowerWithUnionid0A1",
        unionid="oUnion01FollowerSandbox000A1",
        nickname="小明 Follower",
        headimgurl=_avatar("Ming"),
        subscribed=True,
        subscribe_time=_FOLLOWED_AT,
        subscribe_scene="ADD_SCENE_QR_CODE",  # the account's ordinary QR code: no scene value
    ),
    SandboxUser(
        openid="oSbx02NotFollowingUnionid0B2",
        unionid="oUnion02NotFollowingSandbxB2",
        nickname="小红 Visitor",
        headimgurl=_avatar("Hong"),
        subscribed=False,
        subscribe_time=None,
    ),
    SandboxUser(
        openid="oSbx03FollowerNoUnionid000C3",
        unionid=None,
        nickname="老王 (no unionid)",
        headimgurl=_avatar("Wang"),
        subscribed=True,
        subscribe_time=_FOLLOWED_AT + 86400,
        subscribe_scene="ADD_SCENE_SEARCH",
    ),
    SandboxUser(
        openid="oSbx04NoAvatarNoUnionid000D4",
        unionid=None,
        nickname="Anonymous",
        headimgurl="",
        subscribed=False,
        subscribe_time=None,
    ),
)

# Not one of SANDBOX_USERS, which tests and flows take as real people by index: a person on
# the snapshot page only, for the sign-in to refuse. Pick it in the user picker to see that.
SNAPSHOT_USER = SandboxUser(
    openid="oSbx05SnapshotVirtualUser0E5",
    # Observed: one virtual unionid on several openids, so it names nobody.
    unionid="oUnion05SnapshotVirtualShrE5",
    nickname="微信用户 (snapshot page)",
    headimgurl="",
    subscribed=False,
    subscribe_time=None,
    snapshot=True,
)

USERS_BY_OPENID = {user.openid: user for user in (*SANDBOX_USERS, SNAPSHOT_USER)}


# The Open Platform website app (网站应用, SandboxConfig.website_appid): WeChat gives a person a
# different openid in every app, and one unionid across the apps of one Open Platform account
# (WeChat_Login, website.py). The account's openids above stay as they are; these are the same
# people as the website app sees them.
WEBSITE_OPENIDS = {
    "oSbx01FollowerWithUnionid0A1": "oWeb01FollowerWithUnionid0A1",
    "oSbx02NotFollowingUnionid0B2": "oWeb02NotFollowingUnionid0B2",
    "oSbx03FollowerNoUnionid000C3": "oWeb03FollowerNoUnionid000C3",
    "oSbx04NoAvatarNoUnionid000D4": "oWeb04NoAvatarNoUnionid000D4",
}
# A website app belongs to an Open Platform account by definition, so everyone it signs in has a
# unionid. The users above without one stand for "the Official Account is not bound to that
# Open Platform account": the website app's unionid for them names nobody the account knows.
WEBSITE_ONLY_UNIONIDS = {
    "oSbx03FollowerNoUnionid000C3": "oUnion03WebsiteOnlySandbx0C3",
    "oSbx04NoAvatarNoUnionid000D4": "oUnion04WebsiteOnlySandbx0D4",
}


def website_openid(user: SandboxUser) -> str:
    """The person's openid in the website app: 28 characters, never their account openid."""
    known = WEBSITE_OPENIDS.get(user.openid)
    if known is not None:
        return known
    return "oWeb" + hashlib.sha256(user.openid.encode()).hexdigest()[:24]


def website_unionid(user: SandboxUser) -> str:
    """The person's unionid as the website app sees it: the account's one when it has one."""
    if user.unionid:
        return user.unionid
    known = WEBSITE_ONLY_UNIONIDS.get(user.openid)
    if known is not None:
        return known
    return "oUnionW" + hashlib.sha256(user.openid.encode()).hexdigest()[:21]


# More Official Accounts (SandboxConfig.more_accounts): WeChat gives a person another openid in
# each of them too. The first account keeps the openids above (USERS_BY_OPENID); in any other
# the openid is derived from that account's appid and the person, so it is the same on every
# run and tests can compute it.
ACCOUNT_OPENID_PREFIX = "oAcc"


def account_openid(user: SandboxUser, appid: str, config: SandboxConfig) -> str:
    """The person's openid in the app `appid`: 28 characters, different in every app.

    `user` is the person as SANDBOX_USERS (or SNAPSHOT_USER) has them. The first Official
    Account (config.appid) keeps their openid; the website app (config.website_appid) gives
    website_openid; any other account "oAcc" and 24 hex digits of SHA-256 over its appid and
    the person (an emulator choice: WeChat's openids are opaque).
    """
    if appid == config.appid:
        return user.openid
    if config.website_appid and appid == config.website_appid:
        return website_openid(user)
    digest = hashlib.sha256(f"{appid}\0{user.openid}".encode()).hexdigest()
    return ACCOUNT_OPENID_PREFIX + digest[:24]


def account_unionid(user: SandboxUser, appid: str, config: SandboxConfig) -> str | None:
    """The person's unionid as the app `appid` sees it.

    One unionid links a person across the apps of one Open Platform account (WeChat's UnionID
    mechanism). The first account sees the cast's unionid, None for the people who stand for
    "the first account is not bound to the Open Platform account". Every other account and the
    website app are bound: they see the person's unionid, or for those people the website-only
    one (website_unionid), which then links them between those apps only.
    """
    if appid == config.appid:
        return user.unionid
    return website_unionid(user)
