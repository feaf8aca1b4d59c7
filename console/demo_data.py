"""Generate a county service centre's completed service items as an import file (CSV or JSONL).

The rows look like what a 政务服务中心 system exports: 13 departments with their matters and uneven
volumes, ids numbered per day ("2026091500123" = 15 Sep 2026, item 123 of that day), completion
times in Asia/Shanghai local time ("YYYY-MM-DD HH:MM:SS") spread over the last `quarters` calendar
quarters up to `now` (the current quarter to date plus the quarters-1 before it), mostly in office
hours (09:00-12:00, 13:30-17:30) on working days of China's statutory calendar (chinesecalendar;
plain Monday-Friday for years it does not know yet), some on Saturday mornings and a few online
items at any hour. Rows are written in completion order.

Phone numbers are fictitious by choice, not by any official reservation (China has none):

- mobiles come from the block 199 0000 0000 - 199 0099 9999 (1,000,000 numbers; phonenumbers
  validates them as CN mobiles);
- landlines from Chongqing 023 6199 0000 - 023 6199 9999 (10,000 numbers); about a quarter of them
  are written without the area code ("61990123"), so they only validate with area_code="023".

Such numbers may still belong to real subscribers: dial them only through the simulator. They are
written the ways office systems write them: "19900123456", "199 0012 3456", "199-0012-3456",
"+8619900123456", "+86 199 0012 3456", "008619900123456", full-width digits, padded with blanks;
"023-61990123", "(023)61990123", "02361990123", "023 6199 0123", "+86 23 6199 0123", "61990123".

About `malformed_ratio` of the rows carry exactly one defect on purpose (see DEFECTS):
short_phone (a mobile with one digit missing), service_number (a 400 company hotline),
letters_in_phone (two digits replaced by capital letters other than O, I and X), empty_phone,
bad_date (completion time "YYYY-13-45 HH:MM:SS"), empty_department (部门编码 blank).

The same seed, n, now and options give the same rows and the same file, byte for byte.
"""

from __future__ import annotations

import csv
import json
import random
import sys
from bisect import bisect
from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta
from itertools import accumulate
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import chinese_calendar
from tqdm import tqdm

HEADERS = ["办件编号", "部门编码", "部门名称", "事项名称", "办理渠道", "申请人", "联系电话", "办结时间"]
TIMEZONE = ZoneInfo("Asia/Shanghai")
FORMATS = ("csv", "jsonl")
DEFECTS = (
    "short_phone",
    "service_number",
    "letters_in_phone",
    "empty_phone",
    "bad_date",
    "empty_department",
)

# (code, name, kind); the codes are the pinyin initials many county systems use.
DEPARTMENTS: list[tuple[str, str, str]] = [
    ("SWJ", "税务局", "service"),
    ("SCJGJ", "市场监督管理局", "approval"),
    ("ZRZYJ", "自然资源局", "approval"),
    ("RSJ", "人力资源和社会保障局", "service"),
    ("GAJ", "公安局", "enforcement"),
    ("ZJJ", "住房和城乡建设局", "approval"),
    ("JTYSJ", "交通运输局", "approval"),
    ("WJW", "卫生健康委员会", "approval"),
    ("MZJ", "民政局", "service"),
    ("YBJ", "医疗保障局", "service"),
    ("BDCDJZX", "不动产登记中心", "service"),
    ("GJJZX", "住房公积金管理中心", "service"),
    ("CGZFJ", "城市管理综合行政执法局", "enforcement"),
]

# Relative yearly volume: tax and property transfers fill the hall, planning permits trickle in.
DEPARTMENT_WEIGHTS = {
    "SWJ": 220, "SCJGJ": 140, "ZRZYJ": 12, "RSJ": 130, "GAJ": 120, "ZJJ": 18, "JTYSJ": 20,
    "WJW": 15, "MZJ": 45, "YBJ": 110, "BDCDJZX": 150, "GJJZX": 70, "CGZFJ": 10,
}  # fmt: skip

# code -> [(matter, weight, can be done online)]; offline matters need the citizen at a counter.
# fmt: off
MATTERS: dict[str, list[tuple[str, int, bool]]] = {
    "SWJ": [
        ("契税申报", 30, True), ("增值税发票申领", 18, True), ("个人所得税综合所得汇算清缴", 14, True),
        ("车辆购置税申报", 10, True), ("完税证明开具", 10, True), ("税务登记信息确认", 8, True),
        ("房产税申报", 6, True), ("个体工商户定期定额核定", 4, False),
    ],
    "SCJGJ": [
        ("企业开办登记", 25, True), ("个体工商户设立登记", 25, True), ("企业变更登记", 15, True),
        ("食品经营许可", 12, True), ("企业注销登记", 8, True), ("营业执照补领", 6, True),
        ("食品小作坊登记", 5, False), ("药品零售企业许可", 4, False),
    ],
    "ZRZYJ": [
        ("建设用地规划许可", 20, False), ("建设工程规划许可", 25, False),
        ("乡村建设规划许可", 30, False), ("建设项目用地预审与选址意见书", 10, False),
        ("临时用地审批", 10, False), ("采矿权延续登记", 5, False),
    ],
    "RSJ": [
        ("社保卡补办", 22, False), ("灵活就业人员参保登记", 20, True), ("失业保险金申领", 12, True),
        ("养老保险待遇申领", 14, False), ("职工参保登记", 12, True), ("就业创业证申领", 8, True),
        ("社会保险关系转移", 8, True), ("工伤认定申请", 4, False),
    ],
    "GAJ": [
        ("居民身份证换领", 30, False), ("居民身份证补领", 12, False), ("出入境证件办理", 20, False),
        ("户口迁移", 12, False), ("出生登记", 10, False), ("无犯罪记录证明开具", 10, True),
        ("临时身份证明开具", 6, False),
    ],
    "ZJJ": [
        ("建筑工程施工许可", 25, True), ("建设工程竣工验收备案", 20, True), ("商品房预售许可", 10, False),
        ("房屋租赁登记备案", 25, True), ("建筑业企业资质许可", 12, True), ("燃气经营许可", 8, False),
    ],
    "JTYSJ": [
        ("道路运输经营许可", 25, True), ("道路运输证配发", 25, False),
        ("出租汽车驾驶员从业资格证办理", 15, False), ("网络预约出租汽车运输证", 15, True),
        ("公路超限运输许可", 12, True), ("机动车驾驶员培训备案", 8, False),
    ],
    "WJW": [
        ("医师执业注册", 25, True), ("护士执业注册", 30, True), ("出生医学证明补发", 15, False),
        ("公共场所卫生许可", 15, True), ("医疗机构执业登记", 10, False),
        ("母婴保健技术服务执业许可", 5, False),
    ],
    "MZJ": [
        ("结婚登记", 40, False), ("离婚登记", 15, False), ("补领婚姻登记证", 10, False),
        ("最低生活保障申请", 15, False), ("高龄津贴申领", 12, True), ("殡葬补贴申领", 5, False),
        ("社会团体登记", 3, False),
    ],
    "YBJ": [
        ("医保异地就医备案", 30, True), ("城乡居民医保参保登记", 25, True),
        ("门诊慢特病待遇认定", 15, False), ("医疗费用手工报销", 15, False),
        ("医保关系转移接续", 10, True), ("生育保险待遇申领", 5, True),
    ],
    "BDCDJZX": [
        ("二手房转移登记", 30, False), ("抵押权首次登记", 20, True), ("抵押权注销登记", 15, True),
        ("商品房转移登记", 15, False), ("不动产登记资料查询", 10, True), ("预告登记", 5, True),
        ("更正登记", 5, False),
    ],
    "GJJZX": [
        ("住房公积金提取", 45, True), ("住房公积金贷款申请", 15, False), ("公积金缴存登记", 12, True),
        ("公积金个人账户转移", 10, True), ("公积金贷款结清证明开具", 10, True),
        ("公积金缴存证明开具", 8, True),
    ],
    "CGZFJ": [
        ("城市道路占用挖掘许可", 30, True), ("户外广告设置许可", 30, True),
        ("建筑垃圾处置核准", 25, True), ("临时占道经营许可", 15, False),
    ],
}
# fmt: on

CHANNELS_ANY = (("窗口", 45), ("网上办理", 30), ("自助终端", 8), ("掌上办", 17))
CHANNELS_COUNTER = (("窗口", 92), ("自助终端", 8))
CHANNELS_OFF_HOURS = (("网上办理", 60), ("掌上办", 40))

# Surnames with rough frequencies; 谭, 冉, 向 and 秦 are common in Chongqing.
SURNAMES = (
    "王9 李9 张8 刘7 陈7 杨5 黄3 赵3 吴3 周3 徐2 孙2 马2 朱2 胡2 郭2 何2 林1 罗2 高1 郑1 梁1 谢2 宋1 "
    "唐2 许1 韩1 冯1 邓2 曹1 彭1 曾1 肖1 田1 董1 袁1 潘1 蒋1 蔡1 余1 杜1 叶1 程1 苏1 魏1 吕1 丁1 "
    "任1 沈1 姚1 卢1 姜1 崔1 钟1 谭2 陆1 汪1 范1 金1 石1 廖1 贾1 夏1 付1 方1 熊1 秦1 邱1 江1 向2 冉2 "
    "雷1 龙1 陶1 贺1 毛1 龚1 万1 严1 黎1 牟1"
)
GIVEN_MALE = (
    "伟 强 磊 军 勇 杰 涛 斌 超 明 刚 平 辉 鹏 华 飞 鑫 波 宇 浩 "
    "凯 健 俊 帆 帅 旭 宁 龙 林 洋 亮 建 国 成 志 文 海 松 峰 宏"
)
GIVEN_FEMALE = (
    "芳 娜 敏 静 丽 艳 娟 霞 燕 玲 婷 琳 雪 慧 莹 倩 洁 颖 欣 梅 "
    "兰 红 琴 蓉 萍 佳 媛 璐 晶 露 丹 莉 凤 英 秀 艺 悦 彤 妍 茜"
)

MOBILE_FIRST, MOBILE_POPULATION = 199_0000_0000, 1_000_000  # 199 0000 0000 - 199 0099 9999
LANDLINE_FIRST, LANDLINE_POPULATION = 6199_0000, 10_000  # (023) 6199 0000 - 6199 9999
AREA_CODE = "023"

LANDLINE_SHARE = 0.07  # rows whose contact number is a landline
AGENT_SHARE = 0.05  # rows filed by one of a few agents (accountants, property agents)
AGENT_POOL = 300
BLANK_NAME_SHARE = 0.10

OFFICE_HOURS = ((9 * 3600, 12 * 3600), (13 * 3600 + 1800, 17 * 3600 + 1800))
SATURDAY_HOURS = (9 * 3600, 12 * 3600)
# Per-second weights: staffed counters, the Saturday-morning desk, online items outside hours.
OFFICE_WEIGHT, SATURDAY_WEIGHT, OFF_HOURS_WEIGHT = 1.0, 0.3, 0.02

_MASK64 = (1 << 64) - 1
_FULL_WIDTH = str.maketrans("0123456789", "０１２３４５６７８９")
_LETTERS = "ABCDEFGHJKLMNPQRSTUVWYZ"  # not O, I (read as 0, 1) nor X (an extension marker)
_SURNAME_TABLE = tuple(s[0] for s in SURNAMES.split() for _ in range(int(s[1:])))
_MALE, _FEMALE = tuple(GIVEN_MALE.split()), tuple(GIVEN_FEMALE.split())
_MINUTES = tuple(f"{m // 60:02d}:{m % 60:02d}:" for m in range(1440))
_SECONDS = tuple(f"{s:02d}" for s in range(60))


def generate_items(
    n: int,
    *,
    now: datetime,
    seed: int = 2026,
    quarters: int = 4,
    malformed_ratio: float = 0.02,
) -> Iterator[dict[str, str]]:
    """Return a lazy iterator of n completed service items as {header: text}, oldest first."""
    labelled = generate_items_with_defects(
        n, now=now, seed=seed, quarters=quarters, malformed_ratio=malformed_ratio
    )
    return (row for _, row in labelled)


def generate_items_with_defects(
    n: int,
    *,
    now: datetime,
    seed: int = 2026,
    quarters: int = 4,
    malformed_ratio: float = 0.02,
) -> Iterator[tuple[str | None, dict[str, str]]]:
    """Return a lazy iterator of (defect or None, row) for the rows generate_items yields."""
    if n < 0:
        raise ValueError(f"n must not be negative, got {n}")
    if not 0.0 <= malformed_ratio <= 1.0:
        raise ValueError(f"malformed_ratio must be within 0..1, got {malformed_ratio}")
    # Checked here, not on the first next(), so a bad argument fails before a file is opened.
    timeline = _Timeline(period_start(now, quarters), now)
    return _labelled_rows(n, timeline, seed, malformed_ratio)


def _labelled_rows(
    n: int, timeline: _Timeline, seed: int, malformed_ratio: float
) -> Iterator[tuple[str | None, dict[str, str]]]:
    rng = random.Random(seed)  # noqa: S311 - reproducible demo data, not secrets
    draw = rng.random
    salt = _mix(seed & _MASK64)
    office, off_hours = _service_tables()
    day, seq, u = 0, 0, 0.0
    for i in range(n):
        # The next of n sorted uniform draws, so rows come out in time order without a sort.
        u += (1.0 - u) * (1.0 - draw() ** (1.0 / (n - i)))
        day_number, completed, in_office = timeline.at(u)
        seq = seq + 1 if day_number == day else 1
        day = day_number
        cumulative, services = office if in_office else off_hours
        code, name, matter, channel = services[bisect(cumulative, draw() * cumulative[-1])]
        applicant, phone, digits = _citizen(draw, salt)
        row = {
            "办件编号": str(day * 100_000 + seq) if seq < 100_000 else f"{day}{seq}",
            "部门编码": code,
            "部门名称": name,
            "事项名称": matter,
            "办理渠道": channel,
            "申请人": "" if draw() < BLANK_NAME_SHARE else applicant,
            "联系电话": phone,
            "办结时间": completed,
        }
        defect = None
        if draw() < malformed_ratio:
            defect = DEFECTS[int(draw() * len(DEFECTS))]
            _spoil(row, defect, digits, rng)
        yield defect, row


def write_items(
    path: Path,
    n: int,
    *,
    now: datetime,
    seed: int = 2026,
    fmt: str | None = None,
    progress: bool = False,
    **kw: Any,
) -> int:
    """Stream n generated items to path as CSV or JSON Lines (UTF-8); return rows written."""
    fmt = (fmt or path.suffix.lstrip(".")).lower()
    if fmt not in FORMATS:
        raise ValueError(f"{path.name}: unknown format {fmt!r} (use one of {', '.join(FORMATS)})")
    rows: Iterator[dict[str, str]] = generate_items(n, now=now, seed=seed, **kw)
    if progress:
        rows = iter(tqdm(rows, total=n, unit=" rows", desc=f"writing {path.name}", file=sys.stderr))
    written = 0
    with path.open("w", encoding="utf-8", newline="") as fh:
        if fmt == "csv":
            writer = csv.writer(fh)
            writer.writerow(HEADERS)
            for row in rows:
                writer.writerow(row.values())
                written += 1
        else:
            dumps = json.JSONEncoder(ensure_ascii=False).encode
            for row in rows:
                fh.write(dumps(row) + "\n")
                written += 1
    return written


def period_start(now: datetime, quarters: int) -> datetime:
    """Return the local start of the earliest of the last `quarters` quarters up to now."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if quarters < 1:
        raise ValueError(f"quarters must be at least 1, got {quarters}")
    local = now.astimezone(TIMEZONE)
    index = local.year * 4 + (local.month - 1) // 3 - (quarters - 1)
    return datetime(index // 4, index % 4 * 3 + 1, 1, tzinfo=TIMEZONE)


class _Timeline:
    """Map a fraction of the period's weighted service time to a local completion time."""

    def __init__(self, start: datetime, now: datetime) -> None:
        end = now.astimezone(TIMEZONE).replace(tzinfo=None)
        # (cumulative weight at the end, at the start, weight per second, first second of the
        # day, second after the last, YYYYMMDD, "YYYY-MM-DD ", in office hours)
        self.segments: list[tuple[float, float, float, int, int, int, str, bool]] = []
        total = 0.0
        day = start.date()
        while day <= end.date():
            last = end.hour * 3600 + end.minute * 60 + end.second if day == end.date() else 86400
            number, prefix = day.year * 10_000 + day.month * 100 + day.day, f"{day} "
            for begin, finish, weight, in_office in _day_segments(day):
                finish = min(finish, last)
                if finish > begin:
                    cumulative = total + (finish - begin) * weight
                    self.segments.append(
                        (cumulative, total, weight, begin, finish, number, prefix, in_office)
                    )
                    total = cumulative
            day += timedelta(days=1)
        if total == 0.0:
            raise ValueError(f"no time between {start:%Y-%m-%d} and now to place items in")
        self.total = total
        self.index = 0

    def at(self, fraction: float) -> tuple[int, str, bool]:
        """Return (YYYYMMDD, 'YYYY-MM-DD HH:MM:SS', in office hours); fractions must not decrease."""
        position = fraction * self.total
        segments, index, last = self.segments, self.index, len(self.segments) - 1
        while index < last and position >= segments[index][0]:
            index += 1
        self.index = index
        _, base, weight, begin, finish, number, prefix, in_office = segments[index]
        second = min(begin + int((position - base) / weight), finish - 1)
        return number, prefix + _MINUTES[second // 60] + _SECONDS[second % 60], in_office


def _day_segments(day: date) -> list[tuple[int, int, float, bool]]:
    """Return (start second, end second, weight, in office) for one local day."""
    if _is_workday(day):
        (am_start, am_end), (pm_start, pm_end) = OFFICE_HOURS
        return [
            (0, am_start, OFF_HOURS_WEIGHT, False),
            (am_start, am_end, OFFICE_WEIGHT, True),
            (am_end, pm_start, OFF_HOURS_WEIGHT, False),
            (pm_start, pm_end, OFFICE_WEIGHT, True),
            (pm_end, 86400, OFF_HOURS_WEIGHT, False),
        ]
    if day.weekday() == 5 and not _is_festival(day):
        sat_start, sat_end = SATURDAY_HOURS
        return [
            (0, sat_start, OFF_HOURS_WEIGHT, False),
            (sat_start, sat_end, SATURDAY_WEIGHT, True),
            (sat_end, 86400, OFF_HOURS_WEIGHT, False),
        ]
    return [(0, 86400, OFF_HOURS_WEIGHT, False)]


def _is_workday(day: date) -> bool:
    try:
        return bool(chinese_calendar.is_workday(day))
    except NotImplementedError:  # a year the installed calendar has no data for
        return day.weekday() < 5


def _is_festival(day: date) -> bool:
    try:
        return chinese_calendar.get_holiday_detail(day)[1] is not None
    except NotImplementedError:
        return False


_Service = tuple[str, str, str, str]  # department code, department name, matter, channel


def _service_tables() -> tuple[tuple[list[float], list[_Service]], ...]:
    """Return cumulative weights over services in office hours and outside them (online only)."""
    office: list[tuple[float, _Service]] = []
    off_hours: list[tuple[float, _Service]] = []
    for code, name, _ in DEPARTMENTS:
        matters = MATTERS[code]
        share = DEPARTMENT_WEIGHTS[code] / sum(weight for _, weight, _ in matters)
        for matter, weight, online in matters:
            channels = CHANNELS_ANY if online else CHANNELS_COUNTER
            office += _spread(weight * share, (code, name, matter), channels)
            if online:
                off_hours += _spread(weight * share, (code, name, matter), CHANNELS_OFF_HOURS)
    return tuple(
        (list(accumulate(weight for weight, _ in table)), [service for _, service in table])
        for table in (office, off_hours)
    )


def _spread(
    weight: float, service: tuple[str, str, str], channels: tuple[tuple[str, int], ...]
) -> list[tuple[float, _Service]]:
    total = sum(share for _, share in channels)
    return [(weight * share / total, (*service, channel)) for channel, share in channels]


def _mix(x: int) -> int:
    """Scramble a 64-bit integer (splitmix64's finaliser)."""
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def _citizen(draw: Callable[[], float], salt: int) -> tuple[str, str, str]:
    """Return (name, phone as written, national digits) of the applicant of one item."""
    if draw() < LANDLINE_SHARE:
        key = MOBILE_POPULATION + int(draw() * LANDLINE_POPULATION)
        local = str(LANDLINE_FIRST + (key * 7_919 + salt) % LANDLINE_POPULATION)
        return _name(key, salt), _landline_form(local, draw()), AREA_CODE[1:] + local
    key = int(draw() * (AGENT_POOL if draw() < AGENT_SHARE else MOBILE_POPULATION))
    digits = str(MOBILE_FIRST + (key * 387_403 + salt) % MOBILE_POPULATION)
    return _name(key, salt), _mobile_form(digits, draw()), digits


def _name(key: int, salt: int) -> str:
    """Return the same plausible Chinese name for the same citizen key and seed."""
    h = _mix((key + salt) & _MASK64)
    given = _FEMALE if h & 1 else _MALE
    name = _SURNAME_TABLE[(h >> 1) % len(_SURNAME_TABLE)] + given[(h >> 16) % len(given)]
    if (h >> 32) % 10 < 7:  # two-character given names are the norm
        name += given[(h >> 40) % len(given)]
    return name


def _mobile_form(digits: str, roll: float) -> str:
    if roll < 0.70:
        return digits
    spaced = f"{digits[:3]} {digits[3:7]} {digits[7:]}"
    if roll < 0.80:
        return spaced
    if roll < 0.83:
        return spaced.replace(" ", "-")
    if roll < 0.88:
        return "+86" + digits
    if roll < 0.91:
        return "+86 " + spaced
    if roll < 0.95:
        return "0086" + digits
    if roll < 0.98:
        return digits.translate(_FULL_WIDTH)
    return f" {digits} "


def _landline_form(local: str, roll: float) -> str:
    if roll < 0.40:
        return f"{AREA_CODE}-{local}"
    if roll < 0.50:
        return f"({AREA_CODE}){local}"
    if roll < 0.65:
        return AREA_CODE + local
    if roll < 0.90:
        return local  # the centre's own area, so the clerk left the code out
    if roll < 0.95:
        return f"{AREA_CODE} {local[:4]} {local[4:]}"
    return f"+86 {AREA_CODE[1:]} {local[:4]} {local[4:]}"


def _spoil(row: dict[str, str], defect: str, digits: str, rng: random.Random) -> None:
    """Give the row the one defect named; phone defects start from a mobile number."""
    mobile = digits if digits.startswith("1") else str(MOBILE_FIRST + int(digits[-6:]))
    if defect == "short_phone":
        cut = rng.randrange(3, 11)
        row["联系电话"] = mobile[:cut] + mobile[cut + 1 :]
    elif defect == "service_number":
        row["联系电话"] = f"400-{rng.randrange(600, 1000)}-{rng.randrange(10000):04d}"
    elif defect == "letters_in_phone":
        chars = list(mobile)
        for position in rng.sample(range(3, 11), 2):
            chars[position] = _LETTERS[rng.randrange(len(_LETTERS))]
        row["联系电话"] = "".join(chars)
    elif defect == "empty_phone":
        row["联系电话"] = ""
    elif defect == "bad_date":
        row["办结时间"] = row["办结时间"][:4] + "-13-45" + row["办结时间"][10:]
    elif defect == "empty_department":
        row["部门编码"] = ""
