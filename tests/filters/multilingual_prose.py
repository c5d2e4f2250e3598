"""Comparable prose in the most frequent languages of Common Crawl, written for these tests.

Every language has the same two texts, translated: a short encyclopedic description of a
river town and a short family memory. No other source.
"""

PROSE = {
    "en": (
        "The town lies on the bank of a wide river, about forty kilometres from the coast. It was founded in the "
        "twelfth century by merchants who traded salt and wool with the cities of the north. Today it has a "
        "population of nearly twenty thousand people. The old centre, with its narrow streets and a stone bridge "
        "that has survived several floods, attracts many visitors in the summer. The town also has a small "
        "university, a museum of local history and a market that is held every Saturday on the main square.",
        "When my grandmother was young, she walked to school every morning, even in winter when the snow was deep. "
        "She told us that the teacher lit the stove before the children arrived and that each of them brought a "
        "piece of wood from home. In the evening she helped her mother in the kitchen and read books by the light "
        "of a lamp. She says that she was never bored, because there was always something to do and someone to "
        "talk to.",
    ),
    "de": (
        "Die Stadt liegt am Ufer eines breiten Flusses, etwa vierzig Kilometer von der Küste entfernt. Sie wurde "
        "im zwölften Jahrhundert von Kaufleuten gegründet, die mit den Städten des Nordens Salz und Wolle "
        "handelten. Heute hat sie fast zwanzigtausend Einwohner. Die Altstadt mit ihren engen Gassen und einer "
        "steinernen Brücke, die mehrere Hochwasser überstanden hat, zieht im Sommer viele Besucher an. Die Stadt "
        "hat außerdem eine kleine Universität, ein Museum für Heimatgeschichte und einen Markt, der jeden Samstag "
        "auf dem Hauptplatz stattfindet.",
        "Als meine Großmutter jung war, ging sie jeden Morgen zu Fuß zur Schule, auch im Winter, wenn der Schnee "
        "hoch lag. Sie erzählte uns, dass der Lehrer den Ofen anzündete, bevor die Kinder kamen, und dass jedes "
        "von ihnen ein Stück Holz von zu Hause mitbrachte. Am Abend half sie ihrer Mutter in der Küche und las "
        "Bücher im Licht einer Lampe. Sie sagt, dass ihr nie langweilig war, weil es immer etwas zu tun und "
        "jemanden zum Reden gab.",
    ),
    "fr": (
        "La ville se trouve sur la rive d'un large fleuve, à environ quarante kilomètres de la côte. Elle a été "
        "fondée au douzième siècle par des marchands qui faisaient le commerce du sel et de la laine avec les "
        "villes du nord. Aujourd'hui, elle compte près de vingt mille habitants. Le vieux centre, avec ses rues "
        "étroites et un pont de pierre qui a résisté à plusieurs crues, attire de nombreux visiteurs en été. La "
        "ville possède aussi une petite université, un musée d'histoire locale et un marché qui se tient chaque "
        "samedi sur la place principale.",
        "Quand ma grand-mère était jeune, elle allait à l'école à pied tous les matins, même en hiver quand la "
        "neige était profonde. Elle nous a raconté que l'instituteur allumait le poêle avant l'arrivée des "
        "enfants et que chacun d'eux apportait un morceau de bois de la maison. Le soir, elle aidait sa mère à la "
        "cuisine et lisait des livres à la lumière d'une lampe. Elle dit qu'elle ne s'ennuyait jamais, parce "
        "qu'il y avait toujours quelque chose à faire et quelqu'un à qui parler.",
    ),
    "it": (
        "La città si trova sulla riva di un ampio fiume, a circa quaranta chilometri dalla costa. Fu fondata nel "
        "dodicesimo secolo da mercanti che commerciavano sale e lana con le città del nord. Oggi conta quasi "
        "ventimila abitanti. Il centro storico, con le sue strade strette e un ponte di pietra che è sopravvissuto "
        "a diverse alluvioni, attira molti visitatori in estate. La città ha anche una piccola università, un "
        "museo di storia locale e un mercato che si tiene ogni sabato nella piazza principale.",
        "Quando mia nonna era giovane, andava a scuola a piedi ogni mattina, anche d'inverno quando la neve era "
        "alta. Ci raccontava che il maestro accendeva la stufa prima che arrivassero i bambini e che ognuno di "
        "loro portava un pezzo di legna da casa. La sera aiutava sua madre in cucina e leggeva libri alla luce di "
        "una lampada. Dice che non si annoiava mai, perché c'era sempre qualcosa da fare e qualcuno con cui "
        "parlare.",
    ),
    "es": (
        "La ciudad se encuentra a orillas de un ancho río, a unos cuarenta kilómetros de la costa. Fue fundada en "
        "el siglo doce por comerciantes que vendían sal y lana a las ciudades del norte. Hoy tiene casi veinte mil "
        "habitantes. El casco antiguo, con sus calles estrechas y un puente de piedra que ha resistido varias "
        "inundaciones, atrae a muchos visitantes en verano. La ciudad tiene también una pequeña universidad, un "
        "museo de historia local y un mercado que se celebra todos los sábados en la plaza mayor.",
        "Cuando mi abuela era joven, iba andando a la escuela todas las mañanas, incluso en invierno, cuando la "
        "nieve era profunda. Nos contó que el maestro encendía la estufa antes de que llegaran los niños y que "
        "cada uno de ellos traía un trozo de leña de su casa. Por la tarde ayudaba a su madre en la cocina y leía "
        "libros a la luz de una lámpara. Dice que nunca se aburría, porque siempre había algo que hacer y alguien "
        "con quien hablar.",
    ),
    "pt": (
        "A cidade fica na margem de um rio largo, a cerca de quarenta quilómetros da costa. Foi fundada no século "
        "doze por mercadores que comerciavam sal e lã com as cidades do norte. Hoje tem quase vinte mil "
        "habitantes. O centro histórico, com as suas ruas estreitas e uma ponte de pedra que sobreviveu a várias "
        "cheias, atrai muitos visitantes no verão. A cidade tem também uma pequena universidade, um museu de "
        "história local e um mercado que se realiza todos os sábados na praça principal.",
        "Quando a minha avó era nova, ia a pé para a escola todas as manhãs, mesmo no inverno, quando a neve era "
        "funda. Contou-nos que o professor acendia o fogão antes de as crianças chegarem e que cada uma delas "
        "trazia um pedaço de lenha de casa. À noite ajudava a mãe na cozinha e lia livros à luz de um candeeiro. "
        "Diz que nunca se aborrecia, porque havia sempre alguma coisa para fazer e alguém com quem conversar.",
    ),
    "nl": (
        "De stad ligt aan de oever van een brede rivier, ongeveer veertig kilometer van de kust. Ze werd in de "
        "twaalfde eeuw gesticht door kooplieden die zout en wol verhandelden met de steden in het noorden. "
        "Tegenwoordig heeft ze bijna twintigduizend inwoners. Het oude centrum, met zijn smalle straatjes en een "
        "stenen brug die verschillende overstromingen heeft doorstaan, trekt in de zomer veel bezoekers. De stad "
        "heeft ook een kleine universiteit, een museum voor plaatselijke geschiedenis en een markt die elke "
        "zaterdag op het grote plein wordt gehouden.",
        "Toen mijn grootmoeder jong was, liep ze elke ochtend naar school, zelfs in de winter als er veel sneeuw "
        "lag. Ze vertelde ons dat de onderwijzer de kachel aanstak voordat de kinderen kwamen en dat ieder van hen "
        "een stuk hout van thuis meenam. 's Avonds hielp ze haar moeder in de keuken en las ze boeken bij het "
        "licht van een lamp. Ze zegt dat ze zich nooit verveelde, omdat er altijd iets te doen was en altijd "
        "iemand om mee te praten.",
    ),
    "pl": (
        "Miasto leży nad brzegiem szerokiej rzeki, około czterdziestu kilometrów od wybrzeża. Zostało założone w "
        "dwunastym wieku przez kupców, którzy handlowali solą i wełną z miastami na północy. Dziś liczy prawie "
        "dwadzieścia tysięcy mieszkańców. Stare miasto, z wąskimi uliczkami i kamiennym mostem, który przetrwał "
        "kilka powodzi, przyciąga latem wielu turystów. W mieście jest też mały uniwersytet, muzeum historii "
        "regionu i targ, który odbywa się w każdą sobotę na głównym placu.",
        "Kiedy moja babcia była młoda, co rano chodziła pieszo do szkoły, nawet zimą, gdy leżał głęboki śnieg. "
        "Opowiadała nam, że nauczyciel rozpalał w piecu, zanim przyszły dzieci, i że każde z nich przynosiło z "
        "domu kawałek drewna. Wieczorem pomagała matce w kuchni i czytała książki przy świetle lampy. Mówi, że "
        "nigdy się nie nudziła, bo zawsze było coś do zrobienia i ktoś, z kim można było porozmawiać.",
    ),
    "ru": (
        "Город стоит на берегу широкой реки, примерно в сорока километрах от побережья. Он был основан в "
        "двенадцатом веке купцами, которые торговали солью и шерстью с городами севера. Сегодня в нём живёт почти "
        "двадцать тысяч человек. Старый центр с узкими улочками и каменным мостом, который пережил несколько "
        "наводнений, привлекает летом много туристов. В городе также есть небольшой университет, музей местной "
        "истории и рынок, который работает каждую субботу на главной площади.",
        "Когда моя бабушка была молодой, она каждое утро ходила в школу пешком, даже зимой, когда лежал глубокий "
        "снег. Она рассказывала нам, что учитель растапливал печь до прихода детей и что каждый из них приносил из "
        "дома полено. Вечером она помогала матери на кухне и читала книги при свете лампы. Она говорит, что ей "
        "никогда не было скучно, потому что всегда было что делать и с кем поговорить.",
    ),
    "uk": (
        "Місто розташоване на березі широкої річки, приблизно за сорок кілометрів від узбережжя. Його заснували у "
        "дванадцятому столітті купці, які торгували сіллю та вовною з містами півночі. Сьогодні в ньому живе "
        "майже двадцять тисяч людей. Старий центр із вузькими вуличками та кам'яним мостом, який пережив кілька "
        "повеней, влітку приваблює багато туристів. У місті також є невеликий університет, музей місцевої історії "
        "та ринок, що працює щосуботи на головній площі.",
        "Коли моя бабуся була молодою, вона щоранку ходила до школи пішки, навіть узимку, коли лежав глибокий сніг. "
        "Вона розповідала нам, що вчитель розпалював піч до того, як приходили діти, і що кожен із них приносив із "
        "дому поліно. Увечері вона допомагала матері на кухні й читала книжки при світлі лампи. Вона каже, що їй "
        "ніколи не було нудно, бо завжди було що робити і з ким поговорити.",
    ),
    "cs": (
        "Město leží na břehu široké řeky, asi čtyřicet kilometrů od pobřeží. Bylo založeno ve dvanáctém století "
        "kupci, kteří obchodovali se solí a vlnou s městy na severu. Dnes v něm žije téměř dvacet tisíc lidí. "
        "Staré centrum s úzkými uličkami a kamenným mostem, který přečkal několik povodní, láká v létě mnoho "
        "návštěvníků. Město má také malou univerzitu, muzeum místní historie a trh, který se koná každou sobotu "
        "na hlavním náměstí.",
        "Když byla moje babička mladá, chodila každé ráno pěšky do školy, i v zimě, když byl hluboký sníh. "
        "Vyprávěla nám, že učitel zatopil v kamnech dřív, než přišly děti, a že každé z nich přineslo z domova "
        "kus dřeva. Večer pomáhala matce v kuchyni a četla knihy při světle lampy. Říká, že se nikdy nenudila, "
        "protože vždycky bylo co dělat a s kým si povídat.",
    ),
    "sv": (
        "Staden ligger vid stranden av en bred flod, ungefär fyrtio kilometer från kusten. Den grundades på "
        "1100-talet av köpmän som handlade med salt och ull med städerna i norr. I dag har den nästan tjugo tusen "
        "invånare. Den gamla stadskärnan, med sina smala gator och en stenbro som har klarat flera "
        "översvämningar, lockar många besökare på sommaren. Staden har också ett litet universitet, ett museum "
        "för lokal historia och en marknad som hålls varje lördag på stora torget.",
        "När min mormor var ung gick hon till skolan varje morgon, även på vintern när snön låg djup. Hon "
        "berättade för oss att läraren tände kaminen innan barnen kom och att var och en av dem tog med sig en "
        "vedbit hemifrån. På kvällen hjälpte hon sin mor i köket och läste böcker i skenet från en lampa. Hon "
        "säger att hon aldrig hade tråkigt, eftersom det alltid fanns något att göra och någon att prata med.",
    ),
    "hu": (
        "A város egy széles folyó partján fekszik, mintegy negyven kilométerre a tengerparttól. A tizenkettedik "
        "században alapították kereskedők, akik sóval és gyapjúval kereskedtek az északi városokkal. Ma csaknem "
        "húszezer lakosa van. A régi városközpont szűk utcáival és egy kőhíddal, amely több árvizet is túlélt, "
        "nyáron sok látogatót vonz. A városnak van egy kis egyeteme, egy helytörténeti múzeuma és egy piaca is, "
        "amelyet minden szombaton a főtéren tartanak.",
        "Amikor a nagymamám fiatal volt, minden reggel gyalog járt iskolába, télen is, amikor mély volt a hó. "
        "Elmesélte nekünk, hogy a tanító begyújtotta a kályhát, mielőtt a gyerekek megérkeztek, és hogy "
        "mindegyikük hozott otthonról egy darab fát. Este segített az anyjának a konyhában, és lámpafénynél "
        "könyveket olvasott. Azt mondja, hogy soha nem unatkozott, mert mindig volt mit csinálni és volt kivel "
        "beszélgetni.",
    ),
    "ro": (
        "Orașul se află pe malul unui râu larg, la aproximativ patruzeci de kilometri de coastă. A fost întemeiat "
        "în secolul al doisprezecelea de negustori care făceau comerț cu sare și lână cu orașele din nord. Astăzi "
        "are aproape douăzeci de mii de locuitori. Centrul vechi, cu străzile sale înguste și un pod de piatră "
        "care a rezistat mai multor inundații, atrage mulți vizitatori vara. Orașul are de asemenea o "
        "universitate mică, un muzeu de istorie locală și o piață care se ține în fiecare sâmbătă în piața "
        "principală.",
        "Când bunica mea era tânără, mergea pe jos la școală în fiecare dimineață, chiar și iarna, când zăpada era "
        "mare. Ne-a povestit că învățătorul aprindea soba înainte să sosească copiii și că fiecare dintre ei "
        "aducea de acasă o bucată de lemn. Seara își ajuta mama la bucătărie și citea cărți la lumina unei lămpi. "
        "Spune că nu se plictisea niciodată, pentru că era mereu ceva de făcut și cineva cu care să vorbească.",
    ),
    "el": (
        "Η πόλη βρίσκεται στην όχθη ενός πλατιού ποταμού, περίπου σαράντα χιλιόμετρα από την ακτή. Ιδρύθηκε τον "
        "δωδέκατο αιώνα από εμπόρους που εμπορεύονταν αλάτι και μαλλί με τις πόλεις του βορρά. Σήμερα έχει σχεδόν "
        "είκοσι χιλιάδες κατοίκους. Το παλιό κέντρο, με τα στενά δρομάκια του και μια πέτρινη γέφυρα που άντεξε "
        "σε αρκετές πλημμύρες, προσελκύει πολλούς επισκέπτες το καλοκαίρι. Η πόλη έχει επίσης ένα μικρό "
        "πανεπιστήμιο, ένα μουσείο τοπικής ιστορίας και μια αγορά που γίνεται κάθε Σάββατο στην κεντρική πλατεία.",
        "Όταν η γιαγιά μου ήταν νέα, πήγαινε με τα πόδια στο σχολείο κάθε πρωί, ακόμη και τον χειμώνα, όταν το "
        "χιόνι ήταν βαθύ. Μας έλεγε ότι ο δάσκαλος άναβε τη σόμπα πριν έρθουν τα παιδιά και ότι το καθένα έφερνε "
        "από το σπίτι ένα κομμάτι ξύλο. Το βράδυ βοηθούσε τη μητέρα της στην κουζίνα και διάβαζε βιβλία στο φως "
        "μιας λάμπας. Λέει ότι δεν βαριόταν ποτέ, γιατί υπήρχε πάντα κάτι να κάνει και κάποιος να μιλήσει.",
    ),
    "tr": (
        "Kasaba, geniş bir nehrin kıyısında, sahilden yaklaşık kırk kilometre uzakta yer alır. On ikinci yüzyılda "
        "kuzeydeki şehirlerle tuz ve yün ticareti yapan tüccarlar tarafından kurulmuştur. Bugün nüfusu yaklaşık "
        "yirmi bin kişidir. Dar sokakları ve birçok sele dayanmış taş köprüsüyle eski merkez, yazın çok sayıda "
        "ziyaretçi çeker. Kasabada ayrıca küçük bir üniversite, bir yerel tarih müzesi ve her cumartesi ana "
        "meydanda kurulan bir pazar da vardır.",
        "Büyükannem gençken her sabah okula yürüyerek giderdi, kar derin olduğunda kışın bile. Bize öğretmenin "
        "çocuklar gelmeden önce sobayı yaktığını ve her birinin evden bir parça odun getirdiğini anlatırdı. "
        "Akşamları annesine mutfakta yardım eder ve bir lambanın ışığında kitap okurdu. Hiç sıkılmadığını "
        "söylüyor, çünkü her zaman yapacak bir şey ve konuşacak biri vardı.",
    ),
    "id": (
        "Kota itu terletak di tepi sebuah sungai yang lebar, sekitar empat puluh kilometer dari pantai. Kota ini "
        "didirikan pada abad kedua belas oleh para pedagang yang berdagang garam dan wol dengan kota-kota di "
        "utara. Sekarang kota ini berpenduduk hampir dua puluh ribu orang. Pusat kota lama, dengan jalan-jalannya "
        "yang sempit dan sebuah jembatan batu yang telah bertahan dari beberapa banjir, menarik banyak pengunjung "
        "pada musim panas. Kota ini juga memiliki sebuah universitas kecil, museum sejarah daerah, dan pasar yang "
        "diadakan setiap hari Sabtu di alun-alun utama.",
        "Ketika nenek saya masih muda, ia berjalan kaki ke sekolah setiap pagi, bahkan pada musim hujan ketika "
        "jalan penuh lumpur. Ia bercerita kepada kami bahwa guru menyalakan tungku sebelum anak-anak datang dan "
        "bahwa masing-masing dari mereka membawa sepotong kayu dari rumah. Pada malam hari ia membantu ibunya di "
        "dapur dan membaca buku di bawah cahaya lampu. Ia berkata bahwa ia tidak pernah merasa bosan, karena "
        "selalu ada sesuatu yang bisa dikerjakan dan seseorang untuk diajak bicara.",
    ),
    "vi": (
        "Thị trấn nằm bên bờ một con sông rộng, cách bờ biển khoảng bốn mươi cây số. Nó được thành lập vào thế kỷ "
        "thứ mười hai bởi những thương nhân buôn bán muối và len với các thành phố ở phía bắc. Ngày nay thị trấn "
        "có gần hai mươi nghìn người. Khu phố cổ, với những con đường hẹp và một cây cầu đá đã vượt qua nhiều trận "
        "lũ, thu hút nhiều du khách vào mùa hè. Thị trấn cũng có một trường đại học nhỏ, một bảo tàng lịch sử địa "
        "phương và một khu chợ họp vào mỗi thứ Bảy ở quảng trường chính.",
        "Khi bà tôi còn trẻ, bà đi bộ đến trường mỗi buổi sáng, ngay cả vào mùa đông khi tuyết rơi dày. Bà kể với "
        "chúng tôi rằng thầy giáo nhóm lò sưởi trước khi bọn trẻ đến và mỗi đứa đều mang theo một khúc gỗ từ nhà. "
        "Buổi tối bà giúp mẹ nấu ăn trong bếp và đọc sách dưới ánh đèn. Bà nói rằng bà chưa bao giờ thấy buồn "
        "chán, vì lúc nào cũng có việc để làm và có người để trò chuyện.",
    ),
    "ar": (
        "تقع البلدة على ضفة نهر واسع، على بعد نحو أربعين كيلومترا من الساحل. وقد أسسها في القرن الثاني عشر تجار "
        "كانوا يتاجرون بالملح والصوف مع مدن الشمال. ويبلغ عدد سكانها اليوم نحو عشرين ألف نسمة. ويجذب المركز "
        "القديم، بشوارعه الضيقة وجسره الحجري الذي صمد أمام عدة فيضانات، كثيرا من الزوار في الصيف. وفي البلدة "
        "أيضا جامعة صغيرة ومتحف للتاريخ المحلي وسوق يقام كل يوم سبت في الساحة الرئيسية.",
        "عندما كانت جدتي شابة، كانت تمشي إلى المدرسة كل صباح، حتى في الشتاء عندما كان المطر غزيرا. وقد أخبرتنا أن "
        "المعلم كان يشعل المدفأة قبل وصول الأطفال، وأن كل واحد منهم كان يحضر قطعة من الحطب من البيت. وفي المساء "
        "كانت تساعد أمها في المطبخ وتقرأ الكتب على ضوء مصباح. وتقول إنها لم تشعر بالملل أبدا، لأنه كان هناك "
        "دائما شيء تفعله وشخص تتحدث إليه.",
    ),
    "fa": (
        "این شهر در کنار رودخانه‌ای پهن، در حدود چهل کیلومتری ساحل قرار دارد. این شهر در قرن دوازدهم به دست "
        "بازرگانانی بنا شد که با شهرهای شمال نمک و پشم داد و ستد می‌کردند. امروز نزدیک به بیست هزار نفر در آن "
        "زندگی می‌کنند. مرکز قدیمی شهر با کوچه‌های باریک و پلی سنگی که از چند سیل جان سالم به در برده است، در "
        "تابستان بازدیدکنندگان زیادی را به خود جذب می‌کند. این شهر همچنین یک دانشگاه کوچک، یک موزه تاریخ محلی و "
        "بازاری دارد که هر شنبه در میدان اصلی برپا می‌شود.",
        "وقتی مادربزرگم جوان بود، هر روز صبح پیاده به مدرسه می‌رفت، حتی در زمستان که برف سنگینی می‌بارید. او "
        "برای ما تعریف کرد که معلم پیش از آمدن بچه‌ها بخاری را روشن می‌کرد و هر کدام از آن‌ها یک تکه هیزم از "
        "خانه می‌آورد. عصرها به مادرش در آشپزخانه کمک می‌کرد و زیر نور چراغ کتاب می‌خواند. او می‌گوید که هرگز "
        "حوصله‌اش سر نمی‌رفت، چون همیشه کاری برای انجام دادن و کسی برای حرف زدن بود.",
    ),
    "zh": (
        "这座小城位于一条宽阔河流的岸边，距离海岸大约四十公里。它是在十二世纪由商人建立的，他们与北方的城市进行盐和"
        "羊毛的贸易。今天，这里的人口接近两万。老城区有狭窄的街道和一座经受住了多次洪水的石桥，每年夏天都吸引很多"
        "游客。城里还有一所小型大学、一座地方历史博物馆，以及每个星期六在中心广场上举行的集市。",
        "我的祖母年轻的时候，每天早上都走路去上学，即使在冬天积雪很深的时候也是这样。她告诉我们，老师会在孩子们到"
        "来之前把炉子生好，而每个孩子都会从家里带一块木柴。晚上，她在厨房里帮母亲做饭，然后在灯光下看书。她说她从"
        "来不觉得无聊，因为总有事情可做，也总有人可以说话。",
    ),
    "ja": (
        "この町は広い川の岸辺にあり、海岸から約四十キロ離れている。十二世紀に、北の町々と塩や羊毛を取引していた商人"
        "たちによって築かれた。現在の人口は約二万人である。狭い路地と、何度もの洪水に耐えてきた石橋のある旧市街には"
        "、夏になると多くの観光客が訪れる。町には小さな大学や郷土史博物館もあり、毎週土曜日には中央広場で市場が開か"
        "れる。",
        "祖母は若いころ、毎朝歩いて学校に通っていた。雪が深く積もる冬でもそうだった。子どもたちが来る前に先生がス"
        "トーブに火をつけ、子どもたちはそれぞれ家から薪を一本ずつ持ってきたのだと、祖母は話してくれた。夕方には台所"
        "で母親の手伝いをし、ランプの明かりで本を読んだという。やることも話し相手もいつもあったから、退屈したことは"
        "一度もなかったそうだ。",
    ),
    "ko": (
        "이 도시는 넓은 강가에 자리 잡고 있으며, 해안에서 약 사십 킬로미터 떨어져 있다. 이 도시는 십이 세기에 북쪽 "
        "도시들과 소금과 양모를 거래하던 상인들이 세웠다. 오늘날 인구는 약 이만 명이다. 좁은 골목길과 여러 차례의 "
        "홍수를 견뎌 낸 돌다리가 있는 구시가지는 여름마다 많은 관광객을 끌어들인다. 도시에는 작은 대학교와 향토 역사 "
        "박물관도 있고, 매주 토요일에는 중앙 광장에서 시장이 열린다.",
        "할머니는 젊었을 때 매일 아침 걸어서 학교에 다니셨는데, 눈이 깊이 쌓인 겨울에도 그러셨다. 할머니는 선생님이 "
        "아이들이 오기 전에 난로에 불을 피웠고, 아이들은 저마다 집에서 장작을 한 토막씩 가져왔다고 이야기해 주셨다. "
        "저녁에는 부엌에서 어머니를 도왔고 등불 아래에서 책을 읽으셨다. 할머니는 늘 할 일이 있었고 이야기할 사람이 "
        "있었기 때문에 한 번도 심심한 적이 없었다고 말씀하신다.",
    ),
    "th": (
        "เมืองนี้ตั้งอยู่ริมฝั่งแม่น้ำสายกว้าง ห่างจากชายฝั่งประมาณสี่สิบกิโลเมตร เมืองนี้ก่อตั้งขึ้นในศตวรรษที่สิบสอง"
        "โดยพ่อค้าที่ค้าขายเกลือและขนสัตว์กับเมืองต่าง ๆ ทางเหนือ ปัจจุบันมีประชากรเกือบสองหมื่นคน "
        "ย่านเมืองเก่าซึ่งมีตรอกแคบ ๆ และสะพานหินที่ผ่านน้ำท่วมมาหลายครั้ง ดึงดูดนักท่องเที่ยวจำนวนมากในฤดูร้อน "
        "ในเมืองยังมีมหาวิทยาลัยขนาดเล็ก พิพิธภัณฑ์ประวัติศาสตร์ท้องถิ่น และตลาดที่เปิดทุกวันเสาร์ที่ลานกลางเมือง",
        "ตอนที่ยายของฉันยังสาว ยายเดินไปโรงเรียนทุกเช้า แม้แต่ในฤดูหนาวที่อากาศหนาวจัด ยายเล่าให้เราฟังว่า"
        "ครูจะจุดเตาไฟก่อนที่เด็ก ๆ จะมาถึง และเด็กแต่ละคนจะนำฟืนมาจากบ้านคนละท่อน "
        "ตอนเย็นยายช่วยแม่ทำอาหารในครัวและอ่านหนังสือใต้แสงตะเกียง ยายบอกว่ายายไม่เคยรู้สึกเบื่อเลย "
        "เพราะมีงานให้ทำและมีคนให้คุยด้วยเสมอ",
    ),
}
"""Two comparable texts per language, keyed by lid.176 code."""
